package drills

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/infra/qemu"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/health"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/test/e2e"
)

// Cluster is the cluster the drills run on, and the ways to reach it.
type Cluster struct {
	DataDir, Name string
	Key           string // SSH private key
	State         *cluster.State
	Bundle        *pki.Bundle
	Access        *cluster.Access
	// quick is a client whose requests give up after a few seconds, for
	// polling a cluster that may be half down.
	quick kubernetes.Interface
	// Workloads are the kube-system pods a healthy cluster has.
	Workloads []string
	// rest is each machine's 1-minute load average at rest (MeasureRest).
	rest map[string]float64
}

// Connect opens the cluster `kubeup up` made in dataDir.
func Connect(dataDir, name, key string, workloads []string) (*Cluster, error) {
	st, err := cluster.LoadState(dataDir, name)
	if err != nil {
		return nil, err
	}
	b, err := cluster.LoadBundle(dataDir, name)
	if err != nil {
		return nil, err
	}
	a, err := cluster.Connect(dataDir, name)
	if err != nil {
		return nil, err
	}
	_, kc, err := cluster.Kubeconfig(dataDir, name)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 5 * time.Second
	quick, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Cluster{DataDir: dataDir, Name: name, Key: key, State: st, Bundle: b, Access: a, quick: quick, Workloads: workloads}, nil
}

// Quick is a client of the cluster's endpoint whose requests give up after
// 5 s, for polling or writing while machines are down.
func (c *Cluster) Quick() kubernetes.Interface { return c.quick }

// Machine returns a machine's state by name.
func (c *Cluster) Machine(name string) cluster.MachineState {
	m, _ := c.State.Machine(name)
	return m
}

// SSH reaches a machine's shell.
func (c *Cluster) SSH(m cluster.MachineState) e2e.SSH {
	return e2e.SSH{Port: m.SSHPort, Key: c.Key, User: "kubeup"}
}

// VM is a machine's QEMU process.
func (c *Cluster) VM(m cluster.MachineState) *qemu.VM {
	return cluster.LocalVM(c.DataDir, c.Name, m.Name)
}

// Units reads a machine's kubeup units through its agent.
func (c *Cluster) Units(ctx context.Context, m cluster.MachineState) ([]agent.UnitStatus, error) {
	st, err := c.agentStatus(ctx, m)
	if err != nil {
		return nil, err
	}
	return st.Units, nil
}

// agentStatus is a machine's agent's GET /v1/status, within 10 s.
func (c *Cluster) agentStatus(ctx context.Context, m cluster.MachineState) (*agent.Status, error) {
	ac, err := cluster.AgentClient(ctx, c.State, m, c.Bundle)
	if err != nil {
		return nil, err
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return ac.Status(actx)
}

// Restarts is a unit's restart count on a machine (systemd's NRestarts).
// A read the agent could not make (its D-Bus connection lost, a property
// that timed out) is tried again, up to restartsTries times, 5 s apart:
// the agent reports it as the unit's error with a count of 0, which a
// drill once took for "not restarted" (the addon manager's kill, 2026-12-07:
// systemd's journal said "restart counter is at 1").
func (c *Cluster) Restarts(ctx context.Context, m cluster.MachineState, unit string) (int, error) {
	var err error
	for try := 0; try < restartsTries; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(5 * time.Second):
			}
		}
		var units []agent.UnitStatus
		if units, err = c.Units(ctx, m); err != nil {
			continue
		}
		var n int
		if n, err = restartsOf(units, m.Name, unit); err == nil {
			return n, nil
		}
	}
	return 0, err
}

const restartsTries = 6

// restartsOf is unit's restart count among the agent's unit statuses, or
// why it has none.
func restartsOf(units []agent.UnitStatus, machine, unit string) (int, error) {
	i := slices.IndexFunc(units, func(u agent.UnitStatus) bool { return u.Name == unit })
	switch {
	case i < 0:
		return 0, fmt.Errorf("%s has no unit %s", machine, unit)
	case units[i].Error != "":
		return 0, fmt.Errorf("%s on %s: the agent could not read it: %s", unit, machine, units[i].Error)
	}
	return int(units[i].Restarts), nil
}

// APIReady says whether the API server answers /readyz with "ok". Every
// wait of the drills goes through it, so it is also where the host's admin
// certificate is renewed when a short leaf lifetime needs it: a reboot
// drill's wait can outlive a third of a 20-minute lifetime.
func (c *Cluster) APIReady(ctx context.Context) error {
	if err := c.keepAdmin(); err != nil {
		return err
	}
	body, err := c.quick.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
	if err != nil {
		return fmt.Errorf("GET /readyz: %w", err)
	}
	if string(body) != "ok" {
		return fmt.Errorf("GET /readyz: %q", body)
	}
	return nil
}

// keepAdmin renews the host's admin certificate if it is due (RefreshAdmin);
// every wait loop calls it.
func (c *Cluster) keepAdmin() error {
	if _, err := c.RefreshAdmin(time.Now()); err != nil {
		return fmt.Errorf("renew the host's admin certificate: %w", err)
	}
	return nil
}

// Healthy says what is not healthy: the API, a node, a kube-system pod, or a
// kubeup unit on any machine (nil: everything is).
func (c *Cluster) Healthy(ctx context.Context) error { return c.healthy(ctx, Fresh{}) }

// Fresh asks Healthy for pods restarted since a time on some machines: after
// a reboot the API still shows their pods Ready from before it until the
// machine's kubelet has started them again.
type Fresh struct {
	Since    time.Time
	Machines []string
}

// stale names a pod on one of f's machines whose containers were not all
// started since f.Since ("" when f asks nothing or the pod is fresh).
func (f Fresh) stale(p corev1.Pod) string {
	if f.Since.IsZero() || !slices.Contains(f.Machines, p.Spec.NodeName) || p.Status.Phase == corev1.PodSucceeded {
		return ""
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running == nil || cs.State.Running.StartedAt.Time.Before(f.Since) {
			return p.Name + " not restarted since the reboot"
		}
	}
	return ""
}

func (c *Cluster) healthy(ctx context.Context, fresh Fresh) error {
	if err := c.APIReady(ctx); err != nil {
		return err
	}
	nodes, err := c.quick.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	var names []string
	for _, m := range c.State.Machines {
		names = append(names, m.Name)
	}
	if err := health.NodesReady(nodes.Items, names); err != nil {
		return err
	}
	pods, err := c.quick.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
	if err != nil {
		return err
	}
	if err := health.PodsReady(pods.Items, c.Workloads); err != nil {
		return fmt.Errorf("kube-system: %w", err)
	}
	for _, p := range pods.Items {
		if why := fresh.stale(p); why != "" {
			return errors.New("kube-system: " + why)
		}
	}
	var down []string
	for _, m := range c.State.Machines {
		units, err := c.Units(ctx, m)
		if err != nil {
			return fmt.Errorf("%s's agent: %w", m.Name, err)
		}
		for _, u := range units {
			if u.ActiveState != "active" {
				down = append(down, fmt.Sprintf("%s/%s %s (%s)", m.Name, u.Name, u.ActiveState, u.SubState))
			}
		}
	}
	if len(down) > 0 {
		return errors.New("units not active: " + strings.Join(down, ", "))
	}
	return nil
}

// Recovery is how long a cluster took to come back after an action.
type Recovery struct {
	APIBack, Healthy time.Duration
}

// WaitHealthy polls until the cluster is healthy, from since (the moment of
// the action); APIBack is when /readyz first answered ok, if it ever failed.
// With fresh.Machines, their kube-system pods must have restarted.
func (c *Cluster) WaitHealthy(ctx context.Context, since time.Time, limit time.Duration, fresh Fresh) (Recovery, error) {
	var r Recovery
	ctx, cancel := context.WithDeadline(ctx, since.Add(limit))
	defer cancel()
	apiWasDown := false
	var last error
	for {
		apiErr := c.APIReady(ctx)
		if apiErr != nil {
			apiWasDown = true
		} else if apiWasDown && r.APIBack == 0 {
			r.APIBack = time.Since(since)
		}
		if apiErr == nil {
			if last = c.healthy(ctx, fresh); last == nil {
				r.Healthy = time.Since(since)
				return r, nil
			}
		} else {
			last = apiErr
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("not healthy %s after the action: %w", limit, last)
		case <-time.After(time.Second):
		}
	}
}

// Settle waits until the cluster has been healthy for d without a break,
// so that a drill starts from a cluster at rest (and a restart loop shows).
func (c *Cluster) Settle(ctx context.Context, d, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	healthySince := time.Time{}
	var last error
	for time.Now().Before(deadline) {
		if last = c.Healthy(ctx); last != nil {
			healthySince = time.Time{}
		} else if healthySince.IsZero() {
			healthySince = time.Now()
		} else if time.Since(healthySince) >= d {
			return nil
		}
		time.Sleep(2 * time.Second)
	}
	return fmt.Errorf("not healthy for %s in a row within %s: %v", d, limit, last)
}

// podLogs returns a pod's log.
func (c *Cluster) podLogs(ctx context.Context, ns, name string) (string, error) {
	data, err := c.Access.Clientset.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
	return string(data), err
}

// Load reads a machine's 1-minute load average.
func (c *Cluster) Load(ctx context.Context, m cluster.MachineState) (float64, error) {
	out, err := c.SSH(m).Run(ctx, "cat /proc/loadavg")
	if err != nil {
		return 0, err
	}
	return parseLoad(out)
}

// parseLoad reads the 1-minute figure of /proc/loadavg.
func parseLoad(s string) (float64, error) {
	f := strings.Fields(s)
	if len(f) < 3 {
		return 0, fmt.Errorf("/proc/loadavg: %q", s)
	}
	return strconv.ParseFloat(f[0], 64)
}

// MeasureRest records every machine's load at rest: the reference Quiet
// waits for. Call it on a settled cluster. It samples the 1-minute load
// average every 30 s until it stops falling on every machine (a fresh
// cluster is still busy long after it is healthy), for at most
// restLimit; rest is the lower of the last 1- and 5-minute figures, so
// that a burst of the last minute (a drill's own pods starting) does not
// count as rest.
func (c *Cluster) MeasureRest(ctx context.Context) error { return c.measureRest(ctx, restLimit) }

// measureRest samples until the load stops falling or limit has passed
// (0: one sample).
func (c *Cluster) measureRest(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	prev := map[string]float64{}
	for {
		rest, loads := map[string]float64{}, map[string]float64{}
		for _, m := range c.State.Machines {
			out, err := c.SSH(m).Run(ctx, "cat /proc/loadavg")
			if err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if loads[m.Name], err = parseLoad(out); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
			if rest[m.Name], err = parseRest(out); err != nil {
				return fmt.Errorf("%s: %w", m.Name, err)
			}
		}
		if !falling(prev, loads) || time.Now().After(deadline) {
			c.rest = rest
			return nil
		}
		prev = loads
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(30 * time.Second):
		}
	}
}

// restLimit bounds MeasureRest's wait for the load to stop falling.
const restLimit = 10 * time.Minute

// falling says whether any machine's load fell by more than a few tenths
// since the sample before (none before: still falling, for all we know).
func falling(prev, now map[string]float64) bool {
	if len(prev) == 0 {
		return true
	}
	for name, l := range now {
		if p, ok := prev[name]; !ok || l < p-0.3 {
			return true
		}
	}
	return false
}

// parseRest is the lower of /proc/loadavg's 1- and 5-minute figures.
func parseRest(s string) (float64, error) {
	one, err := parseLoad(s)
	if err != nil {
		return 0, err
	}
	five, err := strconv.ParseFloat(strings.Fields(s)[1], 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/loadavg: %q: %w", s, err)
	}
	return min(one, five), nil
}

// quietLoad is the load a machine may show and still be
// quiet: under TCG an idle master's 1-minute load wanders by about one.
func quietLoad(rest float64) float64 { return rest + max(1, 0.3*rest) }

// Quiet waits until every machine's 1-minute load average is back near its
// load at rest (measured first if MeasureRest was not called), so that a
// drill starts from a machine at rest rather than one still busy healing
// from the drill before: a kill of the API server while the master is
// still re-listing after an etcd kill is two failures, not one. It returns
// how long it waited; past limit it gives up with an error naming the
// machines still busy, and the caller goes on (the drill's own limits
// still hold).
func (c *Cluster) Quiet(ctx context.Context, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	if c.rest == nil {
		// Not measured (make e2e's subset): the load now is the reference.
		if err := c.measureRest(ctx, 0); err != nil {
			return 0, err
		}
		return 0, nil
	}
	for {
		var busy []string
		for _, m := range c.State.Machines {
			l, err := c.Load(ctx, m)
			if err != nil {
				busy = append(busy, fmt.Sprintf("%s (%v)", m.Name, err))
				continue
			}
			if want := quietLoad(c.rest[m.Name]); l > want {
				busy = append(busy, fmt.Sprintf("%s load %.2f > %.2f", m.Name, l, want))
			}
		}
		if len(busy) == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > limit {
			return time.Since(start), fmt.Errorf("not quiet after %s: %s", limit, strings.Join(busy, ", "))
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(10 * time.Second):
		}
	}
}

// JournalAround is a machine's journal from before to after at (kernel
// lines left out): what a failed drill logs, to tell why without a rerun.
func (c *Cluster) JournalAround(ctx context.Context, m cluster.MachineState, at time.Time, before, after time.Duration) (string, error) {
	return c.SSH(m).Run(ctx, fmt.Sprintf("sudo journalctl --no-pager -q -o short-precise --utc --since=@%d --until=@%d _TRANSPORT=stdout + _TRANSPORT=journal + _TRANSPORT=syslog",
		at.Add(-before).Unix(), at.Add(after).Unix()))
}
