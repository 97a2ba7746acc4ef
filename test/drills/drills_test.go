package drills

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/test/e2e"
)

// killed are the units each role's drills kill, in order. A node's kubelet,
// containerd and kube-proxy run the web Service's pods, whose answers are
// checked through the kills.
var killed = map[config.Role][]string{
	config.RoleMaster: {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "containerd", "kube-proxy", "kubeup-agent", "kubeup-addon-manager"},
	config.RoleNode:   {"kubelet", "containerd", "kube-proxy", "kubeup-agent"},
}

// servesWeb: killing these on the web Service's node must not interrupt it.
var servesWeb = map[string]bool{"kubelet": true, "containerd": true, "kube-proxy": true}

// TestDrills runs every drill on one 1+1 cluster and writes the report to
// out/drills (KUBEUP_DRILLS_OUT overrides).
func TestDrills(t *testing.T) {
	if os.Getenv("KUBEUP_DRILLS") != "1" {
		t.Skip("drills boot a cluster and break it for an hour or more: run make drills (KUBEUP_DRILLS=1)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 230*time.Minute)
	defer cancel()
	// KUBEUP_DRILLS_CLUSTER=DATADIR/clusters/NAME (made with SSH keys) and
	// KUBEUP_DRILLS_KEY drill a running cluster instead, for working on the
	// drills; it is left running.
	tc, ok := e2e.ExistingTestCluster(t, "KUBEUP_DRILLS", false)
	if !ok {
		spec := ""
		// A short leaf lifetime (30m) for the cert-renewal drill.
		if l := os.Getenv("KUBEUP_DRILLS_LEAF_LIFETIME"); l != "" {
			spec = fmt.Sprintf("  pki: {leafLifetime: %q}\n", l)
		}
		tc = e2e.UpTestCluster(t, ctx, "drills", spec)
	}
	dataDir, name, key, timings := tc.DataDir, tc.Name, tc.Key, tc.Timings
	c, err := Connect(dataDir, name, key, nil)
	if err != nil {
		t.Fatal(err)
	}
	refreshAdmin(t, c) // a short leaf lifetime can be near its end after up
	c.Workloads, err = AddonWorkloads(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	report := &Report{Cluster: name, Started: time.Now().UTC(), Accel: c.State.Accel, Machines: len(c.State.Machines)}
	report.FirstBoot, err = FirstBoot(timings)
	if err != nil {
		t.Fatal(err)
	}
	out := os.Getenv("KUBEUP_DRILLS_OUT")
	if out == "" {
		out = filepath.Join(e2e.RepoRoot(), "out", "drills")
	}
	defer func() {
		var table strings.Builder
		_ = report.WriteTable(&table)
		t.Logf("\n%s", table.String())
		if err := report.Save(out); err != nil {
			t.Errorf("save the report: %v", err)
		}
		if !report.Passed() {
			t.Errorf("drills failed: see %s", filepath.Join(out, "report.txt"))
		}
	}()

	master, node := c.FirstOf(config.RoleMaster), c.FirstOf(config.RoleNode)
	images, err := cluster.Images(filepath.Join(e2e.RepoRoot(), "bin"))
	if err != nil {
		t.Fatal(err)
	}
	data := Data{Namespace: "drill-data", Count: 20}
	if err := data.Write(ctx, c.Access.Clientset); err != nil {
		t.Fatal(err)
	}
	web := &Service{Namespace: data.Namespace, Node: node.Name, Master: master.Name, Image: images.Testbox}
	if err := web.Start(ctx, c.Access.Clientset); err != nil {
		t.Fatal(err)
	}
	if err := c.Settle(ctx, settle, 10*time.Minute); err != nil {
		t.Fatalf("before the drills: %v", err)
	}
	if err := c.MeasureRest(ctx); err != nil {
		t.Fatal(err)
	}

	only := selected(os.Getenv("KUBEUP_DRILLS_ONLY"))
	lifetime, err := c.LeafLifetime()
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case lifetime <= maxDrillLifetime && only("cert-renewal"):
		report.Results = append(report.Results, certRenewalDrill(ctx, t, c, lifetime, web))
	case os.Getenv("KUBEUP_DRILLS_ONLY") != "" && only("cert-renewal"):
		report.Results = append(report.Results, Result{Drill: "cert-renewal", Machine: "all",
			Error: fmt.Sprintf("the cluster's leaf lifetime is %s: the drill needs at most %s (KUBEUP_DRILLS_LEAF_LIFETIME=30m)", lifetime, maxDrillLifetime)})
	case !only("cert-renewal"):
		t.Logf("cert-renewal: not selected (KUBEUP_DRILLS_ONLY=%s)", os.Getenv("KUBEUP_DRILLS_ONLY"))
	default:
		t.Logf("cert-renewal: skipped, the leaf lifetime %s is longer than %s (KUBEUP_DRILLS_LEAF_LIFETIME=30m)", lifetime, maxDrillLifetime)
	}
	for _, m := range []cluster.MachineState{master, node} {
		for _, unit := range killed[m.Role] {
			if !only("kill") && !only("kill:"+m.Name+":"+unit) {
				continue
			}
			refreshAdmin(t, c)
			var svc *Service
			if m.Name == web.Node && servesWeb[unit] {
				svc = web
			}
			report.Results = append(report.Results, Kill(ctx, t, c, m, unit, APIBackGoal, data, svc))
		}
	}
	for _, d := range []struct {
		machines []cluster.MachineState
		hard     bool
	}{
		{[]cluster.MachineState{master}, false}, {[]cluster.MachineState{node}, false},
		{[]cluster.MachineState{master}, true}, {[]cluster.MachineState{node}, true},
		{[]cluster.MachineState{master, node}, false}, {[]cluster.MachineState{master, node}, true},
	} {
		kind := "reboot"
		if d.hard {
			kind = "reset"
		}
		if !only(kind) {
			continue
		}
		refreshAdmin(t, c)
		report.Results = append(report.Results, Reboot(ctx, t, c, d.machines, d.hard, report.FirstBoot, data))
	}
	// Last: everything written after its snapshot is lost.
	if only("etcd-restore") {
		report.Results = append(report.Results, Restore(ctx, t, c, data))
	}
}

// refreshAdmin renews the drills' admin certificate when a short leaf
// lifetime needs it (a drill longer than a third of the lifetime can still
// outlive it: run those with a long lifetime).
func refreshAdmin(t *testing.T, c *Cluster) {
	t.Helper()
	if _, err := c.RefreshAdmin(time.Now()); err != nil {
		t.Fatalf("renew the admin certificate: %v", err)
	}
}

// selected says whether a drill runs: every one when KUBEUP_DRILLS_ONLY is
// empty, else those it lists (comma-separated: cert-renewal, kill, reboot,
// reset, etcd-restore, or one kill as kill:MACHINE:UNIT).
func selected(list string) func(drill string) bool {
	want := map[string]bool{}
	for _, d := range strings.Split(list, ",") {
		if d = strings.TrimSpace(d); d != "" {
			want[d] = true
		}
	}
	return func(drill string) bool { return len(want) == 0 || want[drill] }
}

func TestParseWeights(t *testing.T) {
	out := "CPUWeight=200\nId=controlplane.slice\n\nCPUWeight=100\nId=etcd.service\n\nId=kube-apiserver.service\nCPUWeight=1000\n"
	got, err := parseWeights(out)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"controlplane.slice": "200", "etcd.service": "100", "kube-apiserver.service": "1000"}
	if !maps.Equal(got, want) {
		t.Errorf("%v, want %v", got, want)
	}
	if _, err := parseWeights("\n"); err == nil {
		t.Error("empty output: no error")
	}
	if w := components.APIServerReadyWeights(); w["controlplane.slice"] != 200 || w["kube-apiserver.service"] != 100 || len(w) != 3 {
		t.Errorf("APIServerReadyWeights %v", w)
	}
}
