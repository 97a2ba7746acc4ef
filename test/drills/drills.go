package drills

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/test/e2e"
)

// Limits of the drills, for TCG on 2 cores.
const (
	// APIBackGoal: the API answers again within this of any single kill
	// (the goal under TCG on 2 cores).
	APIBackGoal = 60 * time.Second
	// killLimit bounds the wait for a cluster to heal after a kill.
	killLimit = 10 * time.Minute
	// rebootLimit bounds the wait after a reboot (the pass mark is the
	// first boot's time).
	rebootLimit = 20 * time.Minute
	// restoreLimit bounds an etcd restore, from the command's start to a
	// healthy cluster: the API servers' start after it, under TCG, is
	// most of it.
	restoreLimit = 20 * time.Minute
	// settle: healthy this long in a row before the next drill, so that a
	// restart loop shows in the restart count.
	settle = 30 * time.Second
	// quietLimit bounds the wait for the machines' load to come back to
	// rest before a kill (Cluster.Quiet).
	quietLimit = 6 * time.Minute
	// maxRestarts a killed unit may take: the restart after the kill, and
	// one more (a probe that raced the restart).
	maxRestarts = 2
)

// AddonWorkloads are the Deployments the addon manager keeps in
// kube-system: a healthy cluster has their pods Ready.
func AddonWorkloads(ctx context.Context, c *Cluster) ([]string, error) {
	deps, err := c.Access.Clientset.AppsV1().Deployments("kube-system").List(ctx, metav1.ListOptions{LabelSelector: components.AddonModeLabel})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, d := range deps.Items {
		out = append(out, d.Name)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no addon Deployment in kube-system")
	}
	return out, nil
}

// FirstBoot is the first `up`'s time from the VMs' start to every
// kube-system pod Ready.
func FirstBoot(timingsFile string) (Seconds, error) {
	data, err := os.ReadFile(timingsFile)
	if err != nil {
		return 0, err
	}
	var tm cluster.Timings
	if err := json.Unmarshal(data, &tm); err != nil {
		return 0, err
	}
	var started, ready float64
	for _, p := range tm.Phases {
		switch {
		case strings.HasPrefix(p.Name, "VMs started"):
			started = p.Seconds
		case strings.HasPrefix(p.Name, "kube-system pods Ready"):
			ready = p.Seconds
		}
	}
	if ready == 0 {
		return 0, fmt.Errorf("%s: no kube-system pods Ready phase", timingsFile)
	}
	return Seconds(ready - started), nil
}

func (c *Cluster) FirstOf(r config.Role) cluster.MachineState {
	for _, m := range c.State.Machines {
		if m.Role == r {
			return m
		}
	}
	return cluster.MachineState{}
}

// Kill kills a unit's main process with SIGKILL and waits for the
// cluster to heal: the unit active again, the API ready, every node and
// kube-system pod Ready, the data there, and no restart loop.
func Kill(ctx context.Context, t *testing.T, c *Cluster, m cluster.MachineState, unit string, apiGoal time.Duration, data Data, web *Service) Result {
	t.Helper()
	res := Result{Drill: "kill -9 " + unit, Machine: m.Name}
	fail := func(err error) Result {
		res.Error = err.Error()
		t.Logf("%s on %s: %v", res.Drill, m.Name, err)
		return res
	}
	service := unit + ".service"
	if waited, err := c.Quiet(ctx, quietLimit); err != nil {
		t.Logf("%s on %s: %v; killing anyway", res.Drill, m.Name, err)
	} else if waited > 0 {
		t.Logf("%s on %s: the machines were at rest again after %s", res.Drill, m.Name, waited.Round(time.Second))
	}
	before, err := c.Restarts(ctx, m, service)
	if err != nil {
		return fail(err)
	}
	start := time.Now()
	if _, err := c.SSH(m).Run(ctx, fmt.Sprintf("pid=$(systemctl show -p MainPID --value %s) && [ \"$pid\" -gt 0 ] && sudo kill -9 $pid", service)); err != nil {
		return fail(fmt.Errorf("kill: %w", err))
	}
	rec, err := c.WaitHealthy(ctx, start, killLimit, Fresh{})
	res.APIBack, res.Healthy = secondsOf(rec.APIBack), secondsOf(rec.Healthy)
	if unit == "kube-apiserver" {
		if tl, phases, err := c.StartTimeline(ctx, m, service, start); err != nil {
			t.Logf("%s on %s: its start's timeline: %v", res.Drill, m.Name, err)
		} else {
			res.Start = phases.String()
			t.Logf("%s on %s: its start, %s:\n%s", res.Drill, m.Name, res.Start, tl)
		}
	}
	if err != nil {
		return fail(err)
	}
	end := time.Now()
	if err := c.Settle(ctx, settle, 5*time.Minute); err != nil {
		return fail(fmt.Errorf("after healing: %w", err))
	}
	after, err := c.Restarts(ctx, m, service)
	if err != nil {
		return fail(err)
	}
	res.Restarts = after - before
	if unit == "kube-apiserver" {
		if err := c.readyWeights(ctx, m); err != nil {
			return fail(err)
		}
	}
	what, err := data.Check(ctx, c.Access.Clientset)
	res.Data = what
	if err != nil {
		return fail(err)
	}
	if web != nil {
		ok, failed, err := web.Answers(ctx, c.Access.Clientset, start, end)
		if err != nil {
			return fail(fmt.Errorf("the prober's log: %w", err))
		}
		res.Data += fmt.Sprintf(", service %d/%d", ok, ok+failed)
		if failed > 0 || ok == 0 {
			return fail(fmt.Errorf("the Service failed %d of %d tries while %s was down", failed, ok+failed, unit))
		}
	}
	switch {
	case res.Restarts < 1:
		return fail(fmt.Errorf("%s was not restarted (restarts %d → %d)", service, before, after))
	case res.Restarts > maxRestarts:
		return fail(fmt.Errorf("%s restarted %d times: a restart loop", service, res.Restarts))
	case rec.APIBack > apiGoal:
		return fail(fmt.Errorf("the API was back after %s, goal %s", rec.APIBack.Round(time.Second), apiGoal))
	}
	res.Pass = true
	t.Logf("%s on %s: API back %s, healthy %s, %d restarts, %s", res.Drill, m.Name, res.APIBack, res.Healthy, res.Restarts, res.Data)
	return res
}

// readyWeights checks that the API server's restart left the CPU weights
// it raises for its start at their ready values (its readiness wait lowers
// them once it opens the port gate; the host reaching the API proves only
// the gate).
func (c *Cluster) readyWeights(ctx context.Context, m cluster.MachineState) error {
	want := components.APIServerReadyWeights()
	units := slices.Sorted(maps.Keys(want))
	out, err := c.SSH(m).Run(ctx, "systemctl show -p Id -p CPUWeight "+strings.Join(units, " "))
	if err != nil {
		return fmt.Errorf("CPU weights: %w", err)
	}
	got, err := parseWeights(out)
	if err != nil {
		return err
	}
	for _, u := range units {
		if got[u] != strconv.Itoa(want[u]) {
			return fmt.Errorf("%s CPUWeight=%s after the API server's start, want %d (the start's weights were not lowered)", u, got[u], want[u])
		}
	}
	return nil
}

// parseWeights reads systemctl show's output for several units: a block
// per unit, blank lines between, its properties in systemd's order.
func parseWeights(out string) (map[string]string, error) {
	got := map[string]string{}
	for _, block := range strings.Split(strings.TrimSpace(out), "\n\n") {
		props := map[string]string{}
		for _, line := range strings.Split(block, "\n") {
			if k, v, ok := strings.Cut(strings.TrimSpace(line), "="); ok {
				props[k] = v
			}
		}
		if id, ok := props["Id"]; ok {
			got[id] = props["CPUWeight"]
		}
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("no unit in systemctl show's %q", out)
	}
	return got, nil
}

// Reboot reboots machines (systemctl reboot, or a hard reset through
// QEMU) and waits for the cluster to heal with nobody touching anything,
// within the first boot's time; what Prometheus and the log store had
// before must still be there.
func Reboot(ctx context.Context, t *testing.T, c *Cluster, machines []cluster.MachineState, hard bool, bound Seconds, data Data) Result {
	t.Helper()
	var names []string
	for _, m := range machines {
		names = append(names, m.Name)
	}
	res := Result{Drill: "reboot", Machine: strings.Join(names, "+")}
	if hard {
		res.Drill = "hard reset"
	}
	fail := func(err error) Result {
		res.Error = err.Error()
		t.Logf("%s of %s: %v", res.Drill, res.Machine, err)
		return res
	}
	// Before: a cluster at rest, a sample Prometheus holds, and a line in
	// the log store.
	if err := c.Settle(ctx, settle, 10*time.Minute); err != nil {
		return fail(fmt.Errorf("before: %w", err))
	}
	marker := fmt.Sprintf("drill-marker-%d", time.Now().UnixNano())
	if _, err := c.SSH(machines[0]).Run(ctx, "echo "+marker+" | systemd-cat -t kubeup"); err != nil {
		return fail(err)
	}
	seriesAt, err := recentSeries(ctx, c, 5*time.Minute)
	if err != nil {
		return fail(fmt.Errorf("before: %w", err))
	}
	if err := waitLogged(ctx, c, marker, 2*time.Minute); err != nil {
		return fail(fmt.Errorf("before: %w", err))
	}
	// The line is on the master's disk once VictoriaLogs has flushed it:
	// the one window a hard reset may lose (the README says so).
	time.Sleep(addons.LogStoreFlushInterval + 2*time.Second)

	start := time.Now()
	for _, m := range machines {
		if hard {
			if err := c.VM(m).Reset(); err != nil {
				return fail(err)
			}
			continue
		}
		// The connection drops as the machine goes down: not an error.
		_, _ = c.SSH(m).Run(ctx, "sudo systemctl reboot")
	}
	rec, err := c.WaitHealthy(ctx, start, rebootLimit, Fresh{Since: start, Machines: names})
	res.APIBack, res.Healthy = secondsOf(rec.APIBack), secondsOf(rec.Healthy)
	if err != nil {
		return fail(err)
	}
	what, err := data.Check(ctx, c.Access.Clientset)
	res.Data = what
	if err != nil {
		return fail(err)
	}
	// Healthy includes monitoring and the log store answering again with
	// what they had: Prometheus replays its write-ahead log before it
	// answers.
	left := rebootLimit - time.Since(start)
	n, err := waitSeries(ctx, c, seriesAt, left)
	if err != nil {
		return fail(fmt.Errorf("after: Prometheus lost its series from before: %w", err))
	}
	if err := waitLogged(ctx, c, marker, rebootLimit-time.Since(start)); err != nil {
		return fail(fmt.Errorf("after: the log store lost a line from before: %w", err))
	}
	res.Healthy = secondsOf(time.Since(start))
	res.Data += fmt.Sprintf(", %d series and the log line from before", n)
	if float64(res.Healthy) > float64(bound) {
		return fail(fmt.Errorf("healthy after %s, longer than the first boot (%s)", res.Healthy, bound))
	}
	res.Pass = true
	t.Logf("%s of %s: API back %s, healthy %s, %s", res.Drill, res.Machine, res.APIBack, res.Healthy, res.Data)
	return res
}

// waitSeries waits until Prometheus answers with the `up` series it had at a
// past time, and says how many.
func waitSeries(ctx context.Context, c *Cluster, at time.Time, limit time.Duration) (int, error) {
	deadline := time.Now().Add(limit)
	for {
		if err := c.keepAdmin(); err != nil {
			return 0, err
		}
		samples, err := c.Access.QueryAt(ctx, "up", at)
		if err == nil && len(samples) > 0 {
			return len(samples), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no Prometheus series at %s after %s (%v)", at.Format(time.TimeOnly), limit.Round(time.Second), err)
		}
		time.Sleep(3 * time.Second)
	}
}

// recentSeries waits until Prometheus holds `up` series 30 s in the past
// and returns that moment, the one the drill asks for again after the
// reboot. A fixed moment (a minute before the drill) failed when it fell in
// the scrape gap of the drill before: after a master's reboot, Prometheus
// can be Ready while the minute before holds nothing yet.
func recentSeries(ctx context.Context, c *Cluster, limit time.Duration) (time.Time, error) {
	deadline := time.Now().Add(limit)
	for {
		if err := c.keepAdmin(); err != nil {
			return time.Time{}, err
		}
		at := time.Now().Add(-30 * time.Second)
		samples, err := c.Access.QueryAt(ctx, "up", at)
		if err == nil && len(samples) > 0 {
			return at, nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("no Prometheus series within %s (%v)", limit, err)
		}
		time.Sleep(3 * time.Second)
	}
}

// waitLogged waits until a marker line is in the log store.
func waitLogged(ctx context.Context, c *Cluster, marker string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		if err := c.keepAdmin(); err != nil {
			return err
		}
		n, _, err := e2e.CountMessages(ctx, c.Access, marker)
		if err == nil && n > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no %q in the log store after %s (%v)", marker, limit, err)
		}
		time.Sleep(3 * time.Second)
	}
}

// Restore takes an etcd snapshot with `kubeup etcd snapshot`, deletes
// a namespace of ConfigMaps and a Secret written before it, restores the
// snapshot with `kubeup etcd restore` and waits for the cluster to heal:
// the namespace back with every object and its data, the drills' data
// still there, the API ready, every node, kube-system pod and unit
// healthy. APIBack is the restore command's time (it returns once /readyz
// answers ok); Healthy is from its start.
func Restore(ctx context.Context, t *testing.T, c *Cluster, data Data) Result {
	t.Helper()
	var masters []string
	for _, m := range c.State.Machines {
		if m.Role == config.RoleMaster {
			masters = append(masters, m.Name)
		}
	}
	res := Result{Drill: "etcd-restore", Machine: strings.Join(masters, "+")}
	fail := func(err error) Result {
		res.Error = err.Error()
		t.Logf("%s: %v", res.Drill, err)
		return res
	}
	if err := c.Settle(ctx, settle, 10*time.Minute); err != nil {
		return fail(fmt.Errorf("before: %w", err))
	}
	cs := c.Access.Clientset
	restored := Restored{Namespace: "drill-restore", ConfigMaps: 5}
	if err := restored.Write(ctx, cs); err != nil {
		return fail(fmt.Errorf("write %s: %w", restored.Namespace, err))
	}
	if _, err := restored.Check(ctx, cs); err != nil {
		return fail(fmt.Errorf("before the snapshot: %w", err))
	}
	file := filepath.Join(t.TempDir(), "etcd.db") // 0700: a snapshot holds every Secret
	if _, err := e2e.Kubeup(t, ctx, c.DataDir, "etcd", "snapshot", "--name", c.Name, "--out", file); err != nil {
		return fail(fmt.Errorf("kubeup etcd snapshot: %w", err))
	}
	fi, err := os.Stat(file)
	if err != nil {
		return fail(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	err = restored.Delete(dctx, cs)
	cancel()
	if err != nil {
		return fail(err)
	}
	if _, err := restored.Check(ctx, cs); err == nil {
		return fail(fmt.Errorf("namespace %s still there after its deletion", restored.Namespace))
	}

	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, restoreLimit)
	_, err = e2e.Kubeup(t, rctx, c.DataDir, "etcd", "restore", "--name", c.Name, "--from", file)
	cancel()
	res.APIBack = secondsOf(time.Since(start))
	if err != nil {
		return fail(fmt.Errorf("kubeup etcd restore: %w", err))
	}
	rec, err := c.WaitHealthy(ctx, start, restoreLimit, Fresh{})
	res.Healthy = secondsOf(rec.Healthy)
	if err != nil {
		return fail(err)
	}
	what, err := restored.Check(ctx, cs)
	res.Data = fmt.Sprintf("%s back (snapshot %.1f MiB)", what, float64(fi.Size())/(1<<20))
	if err != nil {
		return fail(err)
	}
	what, err = data.Check(ctx, cs)
	res.Data += ", " + what
	if err != nil {
		return fail(err)
	}
	res.Pass = true
	t.Logf("%s: restore %s, healthy %s, %s", res.Drill, res.APIBack, res.Healthy, res.Data)
	return res
}
