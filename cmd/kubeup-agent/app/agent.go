package app

import (
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/agent"
)

func newAgentCommand(e *env) *cobra.Command {
	config := components.AgentConfigPath
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent (kubeup-agent.service)",
		Long: `agent serves the machine's health, metrics, status and journal over TLS and
programs the pod network (CNI config, routes between machines, masquerade).
It notifies systemd (Type=notify) when serving and pings its watchdog while
healthy.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := agent.LoadConfig(config)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			// client-go logs through klog: send it to the same handler.
			klog.SetSlogLogger(e.log)
			d, err := agent.New(cfg, agent.Options{Log: e.log})
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			return d.Run(ctx)
		},
	}
	cmd.Flags().StringVar(&config, "config", config, "agent configuration file (AgentConfig)")
	return cmd
}

func errMissing(flag string) error { return fmt.Errorf("%s is required", flag) }
