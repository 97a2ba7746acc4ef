package components

import (
	"strings"
	"time"

	"kubeup.dev/kubeup/systemd"
)

// RoleTarget is the unit that groups a role's components.
func RoleTarget(r Role) string { return "kubeup-" + string(r) + ".target" }

// Restart policy shared by every component: restart forever, 3 s apart
// unless the component says otherwise (the API server: 1 s, see
// apiServerRestartDelay). (systemd 252 has no RestartSteps/RestartMaxDelaySec for an exponential
// back-off; a fixed delay with no start limit is the closest it offers.)
const restartDelay = 3 * time.Second

var noStartLimit = time.Duration(0)

// service fills in what every component unit shares: ordering after the
// network and cloud-init, the condition on the env file cloud-init writes,
// the restart policy, resource accounting and membership of the role target.
func service(c Component, role Role, binary string, s systemd.Service) systemd.Unit {
	s.Restart = "always"
	if s.RestartSec == 0 {
		s.RestartSec = restartDelay
	}
	s.StartLimitIntervalSec = &noStartLimit
	return componentUnit(c, role, binary, s)
}

// oneProcessor is the environment of the daemons whose work is many small
// loops with little to run in parallel — the kubelet, containerd,
// kube-proxy, the controller-manager and the scheduler, as already the
// agent, the API load balancer, the addon manager and every addon: one P
// (GOMAXPROCS=1). With a P per CPU a Go runtime wakes an idle thread for
// every goroutine that becomes runnable and hands Ps between threads around
// every slow syscall, and under emulation (TCG) each of those context
// switches empties the TLB. Measured on a loaded 2-vCPU master under TCG
// (2026-12-07, 10 s of /proc/*/task/*/status): the kubelet 946 context
// switches a second, the controller-manager 917, containerd 583, the
// scheduler 251, against 274 for the one-P agent (which fell from 73 to 8
// at rest, and its CPU by a quarter, when it went to one P). The API
// server and etcd keep a P per CPU: they serve many clients at once. (The
// shims containerd starts get GOMAXPROCS=4 from containerd itself, and
// take one P in their own main: images/modules/containerd/shim.)
func oneProcessor() map[string]string { return map[string]string{"GOMAXPROCS": "1"} }

// oneshot is service for a Scheduled component's run: the same ordering,
// condition, accounting and target, Type=oneshot and no restart (its timer
// starts it again; a failed run stays failed until then, for all to see).
func oneshot(c Component, role Role, binary string, s systemd.Service) systemd.Unit {
	s.Type = "oneshot"
	return componentUnit(c, role, binary, s)
}

func componentUnit(c Component, role Role, binary string, s systemd.Service) systemd.Unit {
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
// the scheduler, and on masters the kubelet and containerd. Idle it costs
// nothing; when the machine has more work than CPU (a first boot or a
// restart under TCG, a reconnect storm after the API server died) its
// weight, twice system.slice's (kube-proxy, journald, kubeup's daemons) and
// about 2.5 times kubepods.slice's (every pod, the addons included), gives
// the control plane about half the CPU, so that the API server's
// post-start hooks finish within their fixed deadlines (a minute for the
// service IP repair, 30 s for the RBAC bootstrap) instead of failing and
// starting over. (No dash in the name: systemd reads dashes as nesting,
// and a weight on a nested slice only divides its parent's share.)
//
// The weight was 1000 (85% of a saturated master). A kill -9 of the API
// server had /readyz back in 51 s with it, but a loaded 1+1 cluster under
// TCG (make e2e) then starved everything outside the slice: journald
// logged lines minutes late, so every daemon writing to it blocked (the
// agent missed its watchdog), and the addons' pods (6.7% of the CPU
// between them) took minutes to start and never became Ready. The master's
// kubelet and containerd are in the slice since the same load starved
// them in system.slice: the kubelet stopped renewing its Node's lease.
const ControlPlaneSlice = "controlplane.slice"

const controlPlaneCPUWeight = 200

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
