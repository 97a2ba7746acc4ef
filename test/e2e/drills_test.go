package e2e_test

import (
	"context"
	"testing"

	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/test/drills"
)

// drillsTest is make drills' short subset, on the e2e cluster: kill -9 of
// the API server (back within the drills' goal, one restart, the data
// there) and a graceful reboot of the node (healthy again within the first
// boot's time, Prometheus series and log-store lines from before kept).
// The rest (every unit of both roles, hard resets, both machines at once,
// etcd restore, certificate renewal) is make drills.
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
		drills.Kill(ctx, t, c, c.FirstOf(config.RoleMaster), "kube-apiserver", data, nil),
		drills.Reboot(ctx, t, c, []cluster.MachineState{c.FirstOf(config.RoleNode)}, false, firstBoot, data),
	}
	for _, r := range results {
		if !r.Pass {
			t.Errorf("drill %s on %s: %s", r.Drill, r.Machine, r.Error)
		}
	}
}
