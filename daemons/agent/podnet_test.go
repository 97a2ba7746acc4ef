package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

func node(name, podCIDR string, ips ...string) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{PodCIDR: podCIDR}}
	if podCIDR != "" {
		n.Spec.PodCIDRs = []string{podCIDR}
	}
	n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeHostName, Address: name})
	for _, ip := range ips {
		n.Status.Addresses = append(n.Status.Addresses, corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip})
	}
	return n
}

// kubeNodes decodes Nodes the way the agent receives them: the API
// server's JSON of a full v1 Node, into kubeNode.
func kubeNodes(t *testing.T, nodes ...*corev1.Node) []*kubeNode {
	t.Helper()
	var out []*kubeNode
	for _, n := range nodes {
		out = append(out, asKubeNode(t, n))
	}
	return out
}

func TestKubeNodeDecodesANode(t *testing.T) {
	full := node("node-1", "10.244.2.0/24", "fd00::1", "10.77.0.101")
	full.Spec.PodCIDRs = append(full.Spec.PodCIDRs, "fd00:10:244:2::/64")
	full.Status.Images = []corev1.ContainerImage{{Names: []string{"registry.k8s.io/pause:3.10"}, SizeBytes: 1}}
	full.Labels = map[string]string{"kubernetes.io/hostname": "node-1"}
	n := asKubeNode(t, full)
	if n.Name != "node-1" || n.Labels["kubernetes.io/hostname"] != "node-1" || n.Spec.PodCIDR != "10.244.2.0/24" ||
		!reflect.DeepEqual(n.Spec.PodCIDRs, full.Spec.PodCIDRs) || len(n.Status.Addresses) != 3 ||
		n.Status.Addresses[2] != (kubeNodeAddress{Type: nodeInternalIP, Address: "10.77.0.101"}) {
		t.Errorf("decoded %+v", n)
	}
	c := n.DeepCopyObject().(*kubeNode)
	c.Spec.PodCIDRs[0], c.Status.Addresses[0].Address, c.Labels["x"] = "changed", "changed", "y"
	if n.Spec.PodCIDRs[0] == "changed" || n.Status.Addresses[0].Address == "changed" || n.Labels["x"] == "y" {
		t.Error("DeepCopyObject shares memory with the original")
	}
}

func TestDesiredRoutes(t *testing.T) {
	var nodes []NodeNetwork
	for _, n := range kubeNodes(t,
		node("master-0", "10.244.0.0/24", "10.77.0.10"),
		node("node-0", "10.244.1.0/24", "10.77.0.100"),
		node("node-1", "10.244.2.0/24", "fd00::1", "10.77.0.101"),
		node("node-2", "", "10.77.0.102"),         // no CIDR yet
		node("node-3", "10.244.4.0/24"),           // no address yet
		node("evil", "0.0.0.0/0", "10.77.0.200"),  // outside the pod network
		node("wide", "10.0.0.0/8", "10.77.0.201"), // wider than it
	) {
		nodes = append(nodes, nodeNetwork(n))
	}
	own, routes, problems := DesiredRoutes("node-0", netip.MustParsePrefix("10.244.0.0/16"), nodes)
	if own != netip.MustParsePrefix("10.244.1.0/24") {
		t.Errorf("own %v", own)
	}
	want := []Route{r("10.244.0.0/24", "10.77.0.10"), r("10.244.2.0/24", "10.77.0.101")}
	want[0].Node, want[1].Node = "master-0", "node-1"
	if !reflect.DeepEqual(routes, want) {
		t.Errorf("routes %v, want %v", routes, want)
	}
	if len(problems) != 3 {
		t.Errorf("problems %q", problems)
	}
}

func TestReconcile(t *testing.T) {
	td := newTestDaemon(t, nil)
	// A route of a node that has since gone, left from an earlier run.
	td.routes.routes[netip.MustParsePrefix("10.244.7.0/24")] = netip.MustParseAddr("10.77.0.107")
	pn := td.podnet

	pn.reconcile(kubeNodes(t, node("node-0", "", "10.77.0.100"), node("master-0", "10.244.0.0/24", "10.77.0.10")))
	st := pn.Status()
	if st.Ready || st.CNIConfig != "" || !strings.Contains(st.Error, "waiting for Node node-0") || len(st.Routes) != 1 {
		t.Errorf("before allocation: %+v", st)
	}
	if _, err := os.Stat(filepath.Join(td.cfg.Network.CNIConfDir, CNIConfFile)); err == nil {
		t.Error("CNI config written without a pod CIDR")
	}

	pn.reconcile(kubeNodes(t, node("node-0", "10.244.1.0/24", "10.77.0.100"), node("master-0", "10.244.0.0/24", "10.77.0.10")))
	st = pn.Status()
	if !st.Ready || st.PodCIDR != "10.244.1.0/24" || st.Error != "" || !st.Masquerade {
		t.Errorf("after allocation: %+v", st)
	}
	data, err := os.ReadFile(filepath.Join(td.cfg.Network.CNIConfDir, CNIConfFile))
	if err != nil || !strings.Contains(string(data), `"subnet": "10.244.1.0/24"`) {
		t.Errorf("CNI config %s: %v", data, err)
	}
	if got, _ := td.routes.List(); !reflect.DeepEqual(got, []Route{r("10.244.0.0/24", "10.77.0.10")}) {
		t.Errorf("routes %v", got)
	}
	if len(td.masq.cidrs) != 1 || td.masq.cidrs[0] != netip.MustParsePrefix("10.244.0.0/16") {
		t.Errorf("masquerade calls %v (rechecked within a minute?)", td.masq.cidrs)
	}

	td.masq.err = errors.New("iptables: exit status 4")
	pn.masqAt = time.Time{}
	pn.reconcile(kubeNodes(t, node("node-0", "10.244.1.0/24", "10.77.0.100")))
	if st := pn.Status(); st.Ready || !strings.Contains(st.Error, "exit status 4") || len(st.Routes) != 0 {
		t.Errorf("masquerade failing: %+v", st)
	}
}

// TestPodNetworkWatchesNodes runs the task against a fake API server: the
// informer's events drive reconciles.
func TestPodNetworkWatchesNodes(t *testing.T) {
	kube := fake.NewClientset(node("node-0", "", "10.77.0.100"), node("master-0", "10.244.0.0/24", "10.77.0.10"))
	td := newTestDaemon(t, kube)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- td.podnet.Run(ctx) }()

	waitFor(t, "route to master-0", func() bool { return len(td.podnet.Status().Routes) == 1 })
	n, _ := kube.CoreV1().Nodes().Get(ctx, "node-0", metav1.GetOptions{})
	n.Spec.PodCIDR, n.Spec.PodCIDRs = "10.244.1.0/24", []string{"10.244.1.0/24"}
	if _, err := kube.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "ready", func() bool { return td.podnet.Status().Ready })
	if err := kube.CoreV1().Nodes().Delete(ctx, "master-0", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "route removed", func() bool { rs, _ := td.routes.List(); return len(rs) == 0 })
	if calls := td.routes.Calls(); !slices.Contains(calls, "delete 10.244.0.0/24 via 10.77.0.10") {
		t.Errorf("calls %v", calls)
	}
	if err := td.podnet.Healthy(); err != nil {
		t.Error(err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestPodNetworkStuck(t *testing.T) {
	now := time.Now()
	pn := &podNetwork{log: slog.New(slog.NewTextHandler(io.Discard, nil)), now: func() time.Time { return now }}
	pn.synced, pn.lastPass = true, now.Add(-podNetStuckAfter-time.Second)
	if err := pn.Healthy(); err == nil {
		t.Error("a stalled loop is healthy")
	}
	pn.synced = false // waiting for the API server is not being stuck
	if err := pn.Healthy(); err != nil {
		t.Error(err)
	}
}

// blockingHandler is a log handler whose writes of the pod network's
// state hang until release is closed, as a write to a journald that does
// not read does.
type blockingHandler struct {
	slog.Handler
	entered chan struct{}
	release chan struct{}
}

func (h blockingHandler) Handle(ctx context.Context, r slog.Record) error {
	if !strings.HasPrefix(r.Message, "pod network") {
		return nil
	}
	select {
	case h.entered <- struct{}{}:
	default:
	}
	<-h.release
	return nil
}

// The watchdog's check answers while the reconcile loop is stuck writing a
// log line: no log write happens under the lock Healthy takes.
func TestPodNetworkHealthyWhileLoggingBlocks(t *testing.T) {
	td := newTestDaemon(t, nil)
	pn := td.podnet
	h := blockingHandler{Handler: slog.NewTextHandler(io.Discard, nil), entered: make(chan struct{}, 1), release: make(chan struct{})}
	pn.log = slog.New(h)
	done := make(chan struct{})
	go func() {
		defer close(done)
		// No pod CIDR yet: a change of state, which the loop logs.
		pn.reconcile(kubeNodes(t, node("node-0", "", "10.77.0.100")))
	}()
	select {
	case <-h.entered: // the reconcile is now blocked in its log write
	case <-done:
		t.Fatal("the reconcile logged no change of state")
	}
	healthy := make(chan error, 1)
	go func() { healthy <- pn.Healthy(); _ = pn.Status() }()
	select {
	case err := <-healthy:
		if err != nil {
			t.Error(err)
		}
	case <-time.After(5 * time.Second):
		t.Error("Healthy blocked behind a log write")
	}
	close(h.release)
	<-done
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
