package components

import (
	"strings"
	"time"

	"kubeup.dev/kubeup/systemd"
)

// RoleTarget is the unit that groups a role's components.
func RoleTarget(r Role) string { return "kubeup-" + string(r) + ".target" }

// Restart policy shared by every component: restart forever, 3 s apart.
// (systemd 252 has no RestartSteps/RestartMaxDelaySec for an exponential
// back-off; a fixed delay with no start limit is the closest it offers.)
const restartDelay = 3 * time.Second

var noStartLimit = time.Duration(0)

// service fills in what every component unit shares: ordering after the
// network and cloud-init, the condition on the env file cloud-init writes,
// the restart policy, resource accounting and membership of the role target.
func service(c Component, role Role, binary string, s systemd.Service) systemd.Unit {
	name := c.Name()
	s.Description = c.Description()
	s.PartOf = append([]string{RoleTarget(role)}, s.PartOf...)
	s.Wants = append([]string{"network-online.target"}, s.Wants...)
	s.After = append([]string{"network-online.target", "cloud-init.service"}, s.After...)
	s.ConditionPathExists = append([]string{EnvFile(name)}, s.ConditionPathExists...)
	s.EnvironmentFiles = []string{EnvFile(name)}
	s.ExecStart = strings.Join(strings.Fields(binary+" "+s.ExecStart+" $"+ArgsVar), " ")
	if s.Type == "" {
		s.Type = "exec"
	}
	s.Restart = "always"
	s.RestartSec = restartDelay
	s.StartLimitIntervalSec = &noStartLimit
	s.Accounting = true
	return s.Unit(name)
}

// probe is an ExecStartPost that holds a unit in "activating" until its
// health endpoint answers, so that After= on it means "after it is ready".
// It tells a dead start from a slow one: it fails at once when the unit's
// main process exits ($MAINPID) and when the answer has not changed for
// probeStall, but lets a start that progresses (an API server's /readyz
// failing fewer checks each time, under load after a restart) run up to
// probeTimeout.
func probe(e Endpoint, extra ...string) string {
	args := []string{ProbeBinary, "wait", "--url=" + e.URL,
		"--timeout=" + probeTimeout.String(), "--stall=" + probeStall.String()}
	return strings.Join(append(args, extra...), " ")
}

// Readiness waits (see probe). A probed unit's TimeoutStartSec leaves the
// probe a minute to fail with its own message before systemd kills it.
const (
	probeStall         = 3 * time.Minute
	probeTimeout       = 10 * time.Minute
	probedStartTimeout = probeTimeout + time.Minute
)

// ControlPlaneSlice holds etcd, the API server, the controller-manager and
// the scheduler, and on masters the kubelet and containerd. Its CPU weight
// is ten times system.slice's (where kube-proxy and kubeup's daemons run)
// and about thirteen times kubepods.slice's (every pod, the addons
// included): idle
// it costs nothing, but when the machine has more work than CPU — a first
// boot or a restart under TCG, a reconnect storm after the API server died
// — the control plane gets the CPU first, so that the API server's
// post-start hooks finish within their fixed deadlines (a minute for the
// service IP repair, 30 s for the RBAC bootstrap) instead of failing and
// starting over, while every client waits on it anyway. (No dash in the
// name: systemd reads dashes as nesting, and a weight on a nested slice
// only divides its parent's share.)
//
// Measured on a 1+1 cluster under TCG: with the weight, a kill -9 of the
// API server had /readyz back in 51 s; without it, the restarted server
// failed its post-start hooks and restarted three times in ten minutes.
// The master's kubelet and containerd are in it since a 1+1 cluster under
// load (the e2e test's checks) starved them in system.slice: housekeeping
// took 37 s, the kubelet stopped renewing its Node's lease, the master went
// NotReady and its addons were evicted. A master that cannot report is as
// broken as one whose API server cannot start.
const ControlPlaneSlice = "controlplane.slice"

const controlPlaneCPUWeight = 1000

func controlPlaneSlice() systemd.Unit {
	return systemd.Slice{Description: "kubeup control plane: etcd, API server, controller-manager, scheduler, the master's kubelet and containerd",
		CPUWeight: controlPlaneCPUWeight}.Unit(ControlPlaneSlice)
}

// inControlPlane places a control-plane unit in ControlPlaneSlice.
func inControlPlane(s *systemd.Service) { s.Slice = ControlPlaneSlice }

// controlPlaneHardening are sandboxing options for the control-plane daemons,
// which write only their own state.
func controlPlaneHardening(s *systemd.Service, writable ...string) {
	s.NoNewPrivileges = true
	s.ProtectSystem = "full"
	s.ProtectHome = true
	s.PrivateTmp = true
	s.ReadWritePaths = writable
}
