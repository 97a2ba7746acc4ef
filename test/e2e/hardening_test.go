package e2e_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/cluster"
	. "kubeup.dev/kubeup/test/e2e"
	"kubeup.dev/kubeup/test/golden"
)

// podSecurityTest: the pod that would be root on its machine is refused
// outside kube-system, kube-system is labelled privileged for the addons,
// and every addon runs.
func podSecurityTest(t *testing.T, ctx context.Context, a *cluster.Access, image string) {
	t.Helper()
	for _, ns := range []string{"default", "kube-public"} {
		_, err := a.Clientset.CoreV1().Pods(ns).Create(ctx, HostRootPod(ns, image), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "baseline:latest"`) {
			t.Errorf("a privileged host pod in %s: %v; want Forbidden by PodSecurity baseline", ns, err)
		} else {
			t.Logf("a privileged host pod in %s is refused: %v", ns, err)
		}
	}
	ks, err := a.Clientset.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
	if err != nil || ks.Labels[components.PodSecurityLabel("enforce")] != components.PodSecurityPrivileged {
		t.Errorf("kube-system labels %v (%v), want enforce=privileged for the addons", ks.Labels, err)
	}
	// Every addon runs: each Deployment has all its replicas ready within
	// addonsReady. Not at one instant: on a node saturated by verify's pods
	// under TCG a readiness probe (5 s timeout, 3 failures) can miss for a
	// moment (2026-12-07: the log store and aggregator, 0 restarts, ready
	// again within the minute).
	deadline := time.Now().Add(addonsReady)
	for {
		deps, err := a.Clientset.AppsV1().Deployments("kube-system").List(ctx, metav1.ListOptions{LabelSelector: components.AddonModeLabel})
		if err != nil || len(deps.Items) < 5 {
			t.Fatalf("addon Deployments: %v (%v)", deps, err)
		}
		var notReady []string
		for _, d := range deps.Items {
			if want := ptr.Deref(d.Spec.Replicas, 1); d.Status.ReadyReplicas != want {
				notReady = append(notReady, fmt.Sprintf("%s: %d of %d replicas ready", d.Name, d.Status.ReadyReplicas, want))
			}
		}
		if len(notReady) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("addons not ready for %s: %v", addonsReady, notReady)
			return
		}
		time.Sleep(5 * time.Second)
	}
}

// addonsReady bounds the wait for every addon's replicas to be ready.
const addonsReady = 3 * time.Minute

// auditTest: the deletion addonRestoreTest made is in the log store's audit
// trail, with who did it, and the README's query finds it.
func auditTest(t *testing.T, ctx context.Context, a *cluster.Access, dataDir, name string) {
	t.Helper()
	q := cluster.LogQuery{Source: "audit", Since: time.Hour, Text: `verb:delete resource:deployments name:"kubeup-ui"`, Limit: 10}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		entries, err := a.Logs(ctx, q)
		var who []string
		for _, e := range entries {
			who = append(who, e["user"]+" "+e["code"])
		}
		if err == nil && slices.Contains(who, "kubernetes-admin 200") {
			t.Logf("audit: the deletion of kubeup-ui by kubernetes-admin is in the log store (%d entries)", len(entries))
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("audit: no deletion of kubeup-ui by kubernetes-admin in the log store after 2 minutes: %v %v", who, err)
			return
		}
		time.Sleep(5 * time.Second)
	}
	// The README's query, through the CLI.
	out, err := kubeup(t, ctx, dataDir, "logs", "--name", name, "--source", "audit", "--since", "1h", "verb:delete resource:deployments name:kubeup-ui")
	if want := "audit: kubernetes-admin delete deployments kube-system/kubeup-ui -> 200"; err != nil || !strings.Contains(out, want) {
		t.Errorf("kubeup logs --source audit: %v; want a line with %q", err, want)
	}
}

// socketsTest: every machine's listening sockets, through its agent, are
// its role's reviewed list (testdata/sockets/<role>.golden; -update
// rewrites it, for review).
func socketsTest(t *testing.T, ctx context.Context, dataDir string, st *cluster.State) {
	t.Helper()
	b, err := cluster.LoadBundle(dataDir, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	byRole := map[string][]string{}
	for _, m := range st.Machines {
		c, err := cluster.AgentClient(ctx, st, m, b)
		if err != nil {
			t.Fatal(err)
		}
		socks, err := c.Sockets(ctx)
		if err != nil {
			t.Errorf("%s: %v", m.Name, err)
			continue
		}
		ip, _ := netip.ParseAddr(m.IP)
		lines := SocketLines(socks, ip)
		t.Logf("%s listens on:\n  %s", m.Name, strings.Join(lines, "\n  "))
		role := string(m.Role)
		if prev, ok := byRole[role]; ok && !slices.Equal(prev, lines) {
			t.Errorf("%s listens elsewhere than the other %ss:\n%s", m.Name, role, strings.Join(lines, "\n"))
			continue
		}
		byRole[role] = lines
	}
	for role, lines := range byRole {
		golden.Assert(t, "sockets/"+role, SocketsGolden(role, lines))
	}
}

// cisTest: `kubeup verify --cis` passes on the default cluster.
func cisTest(t *testing.T, ctx context.Context, dataDir, name string) {
	t.Helper()
	out, err := kubeup(t, ctx, dataDir, "verify", "--name", name, "--cis")
	if err != nil || !strings.Contains(out, ", 0 failed,") {
		t.Errorf("kubeup verify --cis: %v", err)
	}
}

// The reviewed lists' normalisation.
func TestSocketLines(t *testing.T) {
	t.Parallel()
	ip := netip.MustParseAddr("10.77.0.100")
	socks := []agent.Socket{
		{Proto: "tcp", Address: netip.MustParseAddrPort("10.77.0.100:2379")},
		{Proto: "tcp", Address: netip.MustParseAddrPort("127.0.0.1:41234")},
		{Proto: "tcp", Address: netip.MustParseAddrPort("[::]:10250")},
		{Proto: "udp", Address: netip.MustParseAddrPort("0.0.0.0:5355")},
	}
	got := strings.Join(SocketLines(socks, ip), "\n")
	want := fmt.Sprintf("%-4s %-24s %s\n%-4s %-24s %s\n%-4s %-24s %s\n%-4s %-24s %s",
		"tcp", "127.0.0.1:ephemeral", "containerd (CRI streaming: exec, attach, port-forward)",
		"tcp", "MACHINE_IP:2379", "etcd (clients)",
		"tcp", "[::]:10250", "kubelet",
		"udp", "0.0.0.0:5355", "? (new: who is this?)")
	if got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
