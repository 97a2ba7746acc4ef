package cluster

import (
	"context"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
)

// journalLines is how much of a failing unit's journal a diagnosis shows.
const journalLines = 25

// AgentClient connects to a machine's agent with the cluster's admin
// credentials: through its port forward (local), at its address (metal),
// or through the API server (clouds, TunnelAgentClient; the tunnel lives
// until ctx is done).
func AgentClient(ctx context.Context, st *State, m MachineState, b *pki.Bundle) (*agent.Client, error) {
	if st.Cloud != nil {
		return TunnelAgentClient(ctx, st, m, b)
	}
	cert, key, ok := b.Cert("admin")
	if !ok {
		return nil, fmt.Errorf("the cluster PKI has no admin certificate")
	}
	c, err := agent.NewClient(st.AgentURL(m), b.CAPEM(pki.KubernetesCA), cert, key)
	if err != nil {
		return nil, err
	}
	// Every agent's certificate names ServerName; a metal machine's agent
	// is reached at the machine's own address, which it does not name.
	c.VerifyName(agent.ServerName)
	return c, nil
}

// Diagnose says, for every machine, which kubeup units are not running,
// with the last lines of their journals, so that a failed `up` explains
// itself without a console. A machine whose agent does not answer gets the
// end of its serial console instead.
func Diagnose(ctx context.Context, dataDir string, st *State, b *pki.Bundle) string {
	var out strings.Builder
	out.WriteString("diagnosis:\n")
	target, _ := targetOf(st) // nil unless a cloud
	for _, m := range st.Machines {
		vm := LocalVM(dataDir, st.Name, m.Name)
		if target != nil {
			// Reached through the API server: a machine whose kubelet or
			// the API is down shows only the console's command.
			diagnoseAgent(ctx, &out, st, m, b, target.consoleHint(st.Name, m.Name))
			continue
		}
		if st.Provider == config.ProviderMetal {
			diagnoseAgent(ctx, &out, st, m, b, "its serial console (README: Bare metal, when a machine does not come up)")
			continue
		}
		if _, ok := vm.Running(); !ok {
			fmt.Fprintf(&out, "  %s: the VM is not running\n", m.Name)
			continue
		}
		for _, line := range kernelTrouble(vm.ConsoleLog(), 3) {
			fmt.Fprintf(&out, "  %s: the kernel reported: %s\n", m.Name, line)
		}
		diagnoseAgent(ctx, &out, st, m, b, fmt.Sprintf("end of the serial console (%s):\n%s", vm.ConsoleLog(), indent(tail(vm.ConsoleLog(), 20), "    | ")))
	}
	return out.String()
}

// diagnoseAgent asks a machine's agent which kubeup units are not
// running and adds their journals; console says where to look when the
// agent does not answer.
func diagnoseAgent(ctx context.Context, out *strings.Builder, st *State, m MachineState, b *pki.Bundle, console string) {
	c, err := AgentClient(ctx, st, m, b)
	if err != nil {
		fmt.Fprintf(out, "  %s: %v; %s\n", m.Name, err, console)
		return
	}
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	status, err := c.Status(actx)
	cancel()
	if err != nil {
		fmt.Fprintf(out, "  %s: the agent does not answer (%v); %s\n", m.Name, err, console)
		return
	}
	bad := 0
	for _, u := range status.Units {
		if unitHealthy(u) {
			continue
		}
		bad++
		fmt.Fprintf(out, "  %s: %s is %s/%s (restarted %d times); last %d journal lines:\n", m.Name, u.Name, u.ActiveState, u.SubState, u.Restarts, journalLines)
		jctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		j, err := c.Journal(jctx, u.Name, journalLines)
		cancel()
		if err != nil {
			j = err.Error()
		}
		out.WriteString(indent(j, "    | "))
	}
	if bad == 0 {
		fmt.Fprintf(out, "  %s: every kubeup unit is running (pod network: %+v)\n", m.Name, status.PodNetwork)
	}
}

// unitHealthy: a service runs, a timer waits (a scheduled component's
// timer stays active between runs) or is running its service.
func unitHealthy(u agent.UnitStatus) bool {
	if u.ActiveState != "active" {
		return false
	}
	if strings.HasSuffix(u.Name, ".timer") {
		return u.SubState == "waiting" || u.SubState == "running"
	}
	return u.SubState == "running"
}

// kernelTroubleRE matches the kernel's reports of a machine in trouble on
// its serial console: lockups, hung tasks, the OOM killer, panics, oopses.
var kernelTroubleRE = regexp.MustCompile(`\] (watchdog: BUG: soft lockup.*|rcu: INFO: rcu_\w+ (self-)?detected stall.*|INFO: task .* blocked for more than .*|Out of memory: Killed process .*|Kernel panic - .*|BUG: .*|Oops: .*)$`)

// kernelTrouble returns the last n distinct kernel trouble reports of a
// console log (without their timestamps), oldest first. Under TCG on a
// starved host a guest can lock up for good; the diagnosis then says so in
// one line instead of leaving it in a page of register dumps.
func kernelTrouble(path string, n int) []string {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		m := kernelTroubleRE.FindStringSubmatch(strings.TrimRight(line, "\r"))
		if m == nil {
			continue
		}
		msg := m[1]
		if i := slices.Index(out, msg); i >= 0 {
			out = slices.Delete(out, i, i+1)
		}
		out = append(out, msg)
	}
	if len(out) > n {
		out = out[len(out)-n:]
	}
	return out
}

func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s, prefix string) string {
	s = strings.TrimRight(s, "\n")
	if s == "" {
		return ""
	}
	return prefix + strings.ReplaceAll(s, "\n", "\n"+prefix) + "\n"
}
