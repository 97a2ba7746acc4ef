package e2e_test

import (
	"context"
	"testing"
	"time"

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

// drillsTest is make drills' short subset on the e2e cluster, kept in CI
// while make drills does not fit its budget: kill -9 of the API server,
// back within e2eAPIBack on its first restart, the data there. It left
// make e2e on 2026-12-07 when 2-vCPU guests time-sliced on 2 host CPUs
// pushed the run past an hour, and came back the same evening with 1-vCPU
// guests. The node's graceful reboot that was beside it
// (healthy again 4m03s later, 8m50s for both drills with their checks)
// would put make e2e past its ~25 minutes: it stays in make drills, with
// the hard resets, both machines at once, every unit of both roles, etcd
// restore and certificate renewal.
func drillsTest(t *testing.T, ctx context.Context, dataDir, name, key string) {
	t.Helper()
	c, err := drills.Connect(dataDir, name, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Workloads, err = drills.AddonWorkloads(ctx, c); err != nil {
		t.Fatal(err)
	}
	data := drills.Data{Namespace: "e2e-drills", Count: 5}
	if err := data.Write(ctx, c.Access.Clientset); err != nil {
		t.Fatal(err)
	}
	results := []drills.Result{
		drills.Kill(ctx, t, c, c.FirstOf(config.RoleMaster), "kube-apiserver", e2eAPIBack, data, nil),
	}
	t.Logf("API server kill: API back after %s (make drills' goal %s)", results[0].APIBack, drills.APIBackGoal)
	for _, r := range results {
		if !r.Pass {
			t.Errorf("drill %s on %s: %s", r.Drill, r.Machine, r.Error)
		}
	}
}
