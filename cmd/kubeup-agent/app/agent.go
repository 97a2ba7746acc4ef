package app

import (
	"os"
	"runtime"
	"runtime/debug"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent"
)

func newAgentCommand(e *cli.Env) *cobra.Command {
	config := agentconfig.Path
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (kubeup-agent.service)",
		Long: `agent serves the machine's health, metrics, status and journal over TLS,
programs the pod network (CNI config, routes between machines, masquerade),
forwards the journal of kubeup's units and the containers' logs to the log
aggregator (buffering on disk while it is unreachable), and on masters
reports etcd member health. It notifies systemd (Type=notify) when serving
and pings its watchdog while healthy.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := agent.LoadConfig(config)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			tuneMemory()
			// client-go logs through klog: send it to the same handler.
			klog.SetSlogLogger(e.Log)
			ctx, cancel := cli.SignalContext()
			defer cancel()
			// A node whose seed carries no keys (renewal.join) asks for
			// its certificates first: New loads them.
			if err := agent.Join(ctx, cfg, e.Log.With("task", "join")); err != nil {
				return err
			}
			d, err := agent.New(cfg, agent.Options{Log: e.Log})
			if err != nil {
				return err
			}
			return d.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&config, "config", config, "agent configuration file (AgentConfig)")
	return cmd
}

// Go memory settings of the agent, which runs on every machine under
// MemoryMax=128M (kubeup-agent.service) with an RSS budget of 20 MB (24 MB
// on masters): GOGC=50 keeps the heap closer to its live size than the default 100
// (the agent's heap is a few MB, so the extra collections cost little
// CPU), and a soft limit of 64 MiB makes the collector work harder well
// before the cgroup's hard limit, leaving the rest of it to journalctl
// and the page cache of the log buffer, which the cgroup also counts.
// GOGC or GOMEMLIMIT in the environment (a drop-in) win. Heap profiling is
// off: the agent serves no profiles, and the sampler's stack buckets (kept
// for the life of the process) and its walks through the binary's function
// tables only cost resident memory. The master build links runtime/pprof
// (through gRPC), which keeps the linker from turning it off as it does
// for the node build.
const (
	agentGCPercent   = 50
	agentMemoryLimit = 64 << 20
)

func tuneMemory() {
	runtime.MemProfileRate = 0
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(agentGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(agentMemoryLimit)
	}
}
