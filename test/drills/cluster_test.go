package drills

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/daemons/agent"
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

// The load at rest is the calmer of the last minute and the last five; a
// machine is quiet up to one above it (more on a busy one).
func TestLoadAtRest(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		loadavg   string
		one, rest float64
	}{
		{"3.44 5.99 3.20 3/412 2210\n", 3.44, 3.44},
		{"9.10 4.02 3.00 12/420 2300", 9.10, 4.02},
		{"0.00 0.00 0.00 1/100 1", 0, 0},
	} {
		one, err1 := parseLoad(c.loadavg)
		rest, err2 := parseRest(c.loadavg)
		if err1 != nil || err2 != nil || one != c.one || rest != c.rest {
			t.Errorf("%q: load %v (%v), rest %v (%v); want %v, %v", c.loadavg, one, err1, rest, err2, c.one, c.rest)
		}
	}
	for _, bad := range []string{"", "x y z", "1.0"} {
		if _, err := parseRest(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
	if q := quietLoad(3); q != 4 {
		t.Errorf("quiet at rest 3: %v, want 4", q)
	}
	if q := quietLoad(10); q != 13 {
		t.Errorf("quiet at rest 10: %v, want 13", q)
	}
}

func TestFalling(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		prev, now map[string]float64
		want      bool
	}{
		{nil, map[string]float64{"m": 3}, true},
		{map[string]float64{"m": 9, "n": 2}, map[string]float64{"m": 7.5, "n": 2}, true},
		{map[string]float64{"m": 3.4, "n": 2}, map[string]float64{"m": 3.2, "n": 2.5}, false},
		{map[string]float64{"m": 3}, map[string]float64{"m": 3, "n": 1}, true},
	} {
		if got := falling(c.prev, c.now); got != c.want {
			t.Errorf("falling(%v, %v) = %v", c.prev, c.now, got)
		}
	}
}

// A unit the agent could not read is an error, not 0 restarts.
func TestRestartsOf(t *testing.T) {
	units := []agent.UnitStatus{
		{Name: "etcd.service", Restarts: 2},
		{Name: "kubeup-addon-manager.service", Error: "NRestarts: context deadline exceeded"},
	}
	if n, err := restartsOf(units, "master-0", "etcd.service"); err != nil || n != 2 {
		t.Errorf("etcd: %d, %v", n, err)
	}
	if _, err := restartsOf(units, "master-0", "kubeup-addon-manager.service"); err == nil || !strings.Contains(err.Error(), "could not read") {
		t.Errorf("unreadable unit: %v", err)
	}
	if _, err := restartsOf(units, "master-0", "kubelet.service"); err == nil || !strings.Contains(err.Error(), "has no unit") {
		t.Errorf("missing unit: %v", err)
	}
}
