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
	l, err := NewNodeLabeler(client, factory, slog.New(slog.NewTextHandler(t.Output(), nil)), m)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
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
