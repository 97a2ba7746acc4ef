package addonmanager

import (
	"context"
	"log/slog"
	"maps"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"kubeup.dev/kubeup/components"
)

func node(name string, labels map[string]string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
}

func TestMissingRoleLabels(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   map[string]string
	}{
		{"master", map[string]string{components.RoleLabel: "master"}, map[string]string{ControlPlaneRoleLabel: ""}},
		{"node", map[string]string{components.RoleLabel: "node"}, map[string]string{WorkerRoleLabel: ""}},
		{"master labelled", map[string]string{components.RoleLabel: "master", ControlPlaneRoleLabel: "x"}, nil},
		{"node labelled", map[string]string{components.RoleLabel: "node", WorkerRoleLabel: ""}, nil},
		{"no role", map[string]string{"other": "x"}, nil},
		{"unknown role", map[string]string{components.RoleLabel: "gpu"}, nil},
	} {
		if got := MissingRoleLabels(node("n", c.labels)); !maps.Equal(got, c.want) {
			t.Errorf("%s: MissingRoleLabels = %v, want %v", c.name, got, c.want)
		}
	}
}

func TestNodeLabeler(t *testing.T) {
	client := fake.NewClientset(
		node("master-0", map[string]string{components.RoleLabel: "master"}),
		node("worker-1", map[string]string{components.RoleLabel: "node", "team": "a"}),
		node("worker-2", map[string]string{components.RoleLabel: "node", WorkerRoleLabel: ""}),
	)
	factory := informers.NewSharedInformerFactory(client, 0)
	m := NewMetrics()
	l, err := NewNodeLabeler(client, factory, slog.New(slog.NewTextHandler(t.Output(), nil)), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := startInformers(t, factory)
	eventually(t, "two queued nodes", func() bool { return l.queue.Len() == 2 })
	client.ClearActions()
	l.processNext(ctx)
	l.processNext(ctx)

	patches := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "patch" {
			patches++
		}
	}
	if patches != 2 {
		t.Errorf("%d patches, want 2 (worker-2 is already labelled)", patches)
	}
	for name, want := range map[string]map[string]string{
		"master-0": {components.RoleLabel: "master", ControlPlaneRoleLabel: ""},
		"worker-1": {components.RoleLabel: "node", "team": "a", WorkerRoleLabel: ""},
	} {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !maps.Equal(n.Labels, want) {
			t.Errorf("%s labels = %v, want %v", name, n.Labels, want)
		}
	}
}

// On the clouds each Node gets its fixed pod range once: a labelled Node
// without one is patched, one that has a range (or none fixed) is not.
func TestNodeLabelerPodCIDRs(t *testing.T) {
	has := node("worker-3", map[string]string{components.RoleLabel: "node", WorkerRoleLabel: ""})
	has.Spec.PodCIDR, has.Spec.PodCIDRs = "10.244.103.0/24", []string{"10.244.103.0/24"}
	client := fake.NewClientset(
		node("master-0", map[string]string{components.RoleLabel: "master", ControlPlaneRoleLabel: ""}),
		node("worker-1", map[string]string{components.RoleLabel: "node"}),
		has,
		node("stranger", map[string]string{components.RoleLabel: "node", WorkerRoleLabel: ""}),
	)
	factory := informers.NewSharedInformerFactory(client, 0)
	cidrs := map[string]string{"master-0": "10.244.10.0/24", "worker-1": "10.244.100.0/24", "worker-3": "10.244.102.0/24"}
	l, err := NewNodeLabeler(client, factory, slog.New(slog.NewTextHandler(t.Output(), nil)), NewMetrics(), cidrs)
	if err != nil {
		t.Fatal(err)
	}
	ctx := startInformers(t, factory)
	eventually(t, "two queued nodes", func() bool { return l.queue.Len() == 2 })
	l.processNext(ctx)
	l.processNext(ctx)
	for name, want := range map[string]string{"master-0": "10.244.10.0/24", "worker-1": "10.244.100.0/24", "worker-3": "10.244.103.0/24", "stranger": ""} {
		n, err := client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if n.Spec.PodCIDR != want || (want != "" && (len(n.Spec.PodCIDRs) != 1 || n.Spec.PodCIDRs[0] != want)) {
			t.Errorf("%s pod range %q %v, want %q", name, n.Spec.PodCIDR, n.Spec.PodCIDRs, want)
		}
	}
	if n, _ := client.CoreV1().Nodes().Get(ctx, "worker-1", metav1.GetOptions{}); n.Labels[WorkerRoleLabel] != "" || len(n.Labels) != 2 {
		t.Errorf("worker-1 labels %v: the role label and the pod range come in one patch", n.Labels)
	}
}

// startInformers starts factory's informers until the test ends and waits
// for their caches; the context is the test's.
func startInformers(t *testing.T, factory informers.SharedInformerFactory) context.Context {
	t.Helper()
	ctx := t.Context()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	return ctx
}
