package e2e_test

import (
	"context"
	"testing"
	"time"

	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/test/drills"
)

// e2eAPIBack bounds the API server's return after its kill in make e2e.
// make drills holds it to drills.APIBackGoal (60 s); here, where CI decides
// whether anything lands, the check is that it comes back on its first
// restart with nobody touching it (it took 9 minutes and four failed starts
// before the port gate), and the time is logged against the goal.
//
// 5 minutes: on 2026-12-05 a restart on a master saturated at rest took
// 3m16s (e2e) and 3m46s (drills) to /readyz, each on its first restart;
// on 2026-12-07, 74.5-93.8 s on a cluster at rest (README, Resilience).
const e2eAPIBack = 5 * time.Minute

// drillsTest is make drills' short subset, on the e2e cluster, which issue
// 12 asks CI to keep while make drills does not fit its budget: kill -9 of
// the API server (back within e2eAPIBack, one restart, the data there) and
// a graceful reboot of the node (healthy again within the first boot's
// time, Prometheus series and log-store lines from before kept). It left
// make e2e on 2026-12-07 when 2-vCPU guests time-sliced on 2 host CPUs
// pushed the run past an hour, and came back with 1-vCPU guests (e2e
// 13-16 minutes without it). The rest (every unit of both roles, hard
// resets, both machines at once, etcd restore, certificate renewal) is
// make drills.
func drillsTest(t *testing.T, ctx context.Context, dataDir, name, key, timings string) {
	t.Helper()
	c, err := drills.Connect(dataDir, name, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Workloads, err = drills.AddonWorkloads(ctx, c); err != nil {
		t.Fatal(err)
	}
	firstBoot, err := drills.FirstBoot(timings)
	if err != nil {
		t.Fatal(err)
	}
	data := drills.Data{Namespace: "e2e-drills", Count: 5}
	if err := data.Write(ctx, c.Access.Clientset); err != nil {
		t.Fatal(err)
	}
	results := []drills.Result{
		drills.Kill(ctx, t, c, c.FirstOf(config.RoleMaster), "kube-apiserver", e2eAPIBack, data, nil),
		drills.Reboot(ctx, t, c, []cluster.MachineState{c.FirstOf(config.RoleNode)}, false, firstBoot, data),
	}
	t.Logf("API server kill: API back after %s (make drills' goal %s)", results[0].APIBack, drills.APIBackGoal)
	for _, r := range results {
		if !r.Pass {
			t.Errorf("drill %s on %s: %s", r.Drill, r.Machine, r.Error)
		}
	}
}
