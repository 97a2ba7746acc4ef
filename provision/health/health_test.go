package health

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func node(name string, ready corev1.ConditionStatus) corev1.Node {
	return corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: ready, Reason: "KubeletNotReady", Message: "cni plugin not initialized"}}}}
}

func TestNodesReady(t *testing.T) {
	if err := NodesReady([]corev1.Node{node("a", corev1.ConditionTrue), node("b", corev1.ConditionTrue)}, []string{"a", "b"}); err != nil {
		t.Error(err)
	}
	err := NodesReady([]corev1.Node{node("a", corev1.ConditionFalse)}, []string{"a", "b"})
	want := "a Ready=False (KubeletNotReady: cni plugin not initialized); b has not registered"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}

func pod(name string, phase corev1.PodPhase, ready bool, waiting string) corev1.Pod {
	p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{Phase: phase}}
	if ready {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}
	}
	if waiting != "" {
		p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: waiting}}}}
	}
	return p
}

func TestPodsReady(t *testing.T) {
	ok := []corev1.Pod{pod("coredns-1", corev1.PodRunning, true, ""), pod("job-x", corev1.PodSucceeded, false, "")}
	if err := PodsReady(ok, []string{"coredns"}); err != nil {
		t.Error(err)
	}
	err := PodsReady([]corev1.Pod{pod("coredns-1", corev1.PodPending, false, "ContainerCreating")}, []string{"coredns", "prometheus"})
	want := "coredns-1 is Pending (c: ContainerCreating); no prometheus pod yet"
	if err == nil || err.Error() != want {
		t.Errorf("got %v\nwant %s", err, want)
	}
}
