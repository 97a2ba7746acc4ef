package cluster

import (
	"path/filepath"
	"reflect"
	"testing"

	"kubeup.dev/kubeup/daemons/agent"
)

// An excerpt of a real console: a master whose vCPUs locked up under TCG,
// plus an OOM kill.
func TestKernelTrouble(t *testing.T) {
	path := filepath.Join("testdata", "console-lockup.log")
	got := kernelTrouble(path, 3)
	want := []string{
		"watchdog: BUG: soft lockup - CPU#1 stuck for 44s! [kube-apiserver:484]",
		"rcu: INFO: rcu_preempt self-detected stall on CPU",
		"Out of memory: Killed process 812 (kube-apiserver) total-vm:1234kB",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("kernelTrouble:\n got %q\nwant %q", got, want)
	}
	if got := kernelTrouble(path, 10); len(got) != 4 || got[0] != "watchdog: BUG: soft lockup - CPU#0 stuck for 23s! [etcd:486]" {
		t.Errorf("all of them: %q", got)
	}
	if got := kernelTrouble(filepath.Join("testdata", "missing.log"), 3); got != nil {
		t.Errorf("missing file: %q", got)
	}
}

// A scheduled component's timer is healthy while it waits; a service is
// only while it runs.
func TestUnitHealthy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		u    agent.UnitStatus
		want bool
	}{
		{agent.UnitStatus{Name: "etcd.service", ActiveState: "active", SubState: "running"}, true},
		{agent.UnitStatus{Name: "etcd.service", ActiveState: "active", SubState: "waiting"}, false},
		{agent.UnitStatus{Name: "etcd.service", ActiveState: "failed", SubState: "failed"}, false},
		{agent.UnitStatus{Name: "kubeup-etcd-snapshot.timer", ActiveState: "active", SubState: "waiting"}, true},
		{agent.UnitStatus{Name: "kubeup-etcd-snapshot.timer", ActiveState: "active", SubState: "running"}, true},
		{agent.UnitStatus{Name: "kubeup-etcd-snapshot.timer", ActiveState: "inactive", SubState: "dead"}, false},
	} {
		if got := unitHealthy(tc.u); got != tc.want {
			t.Errorf("%s %s/%s: healthy=%v, want %v", tc.u.Name, tc.u.ActiveState, tc.u.SubState, got, tc.want)
		}
	}
}
