package drills

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestFreshStale(t *testing.T) {
	t.Parallel()
	since := time.Unix(1000, 0)
	pod := func(node string, started ...int64) corev1.Pod {
		p := corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{NodeName: node}}
		for _, s := range started {
			st := corev1.ContainerStatus{}
			if s > 0 {
				st.State.Running = &corev1.ContainerStateRunning{StartedAt: metav1.NewTime(time.Unix(s, 0))}
			}
			p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, st)
		}
		return p
	}
	f := Fresh{Since: since, Machines: []string{"master-0"}}
	for _, tc := range []struct {
		name  string
		f     Fresh
		pod   corev1.Pod
		stale bool
	}{
		{"restarted", f, pod("master-0", 1001, 1002), false},
		{"one container from before", f, pod("master-0", 1001, 999), true},
		{"not running yet", f, pod("master-0", 0), true},
		{"other machine", f, pod("node-0", 10), false},
		{"nothing asked", Fresh{}, pod("master-0", 10), false},
	} {
		if got := tc.f.stale(tc.pod) != ""; got != tc.stale {
			t.Errorf("%s: stale %v, want %v", tc.name, got, tc.stale)
		}
	}
}
