package app

import (
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"
	"kubeup.dev/kubeup/cmd/internal/cli"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/daemons/addonmanager"
)

func newAddonManagerCommand(e *cli.Env) *cobra.Command {
	config := components.AddonManagerConfigPath
	cmd := &cobra.Command{
		Use:   "addon-manager",
		Short: "Run the addon manager (kubeup-addon-manager.service, masters)",
		Long: `addon-manager keeps the cluster's addons as their manifests declare, like
Kubernetes' kube-addon-manager: objects labelled
addonmanager.kubernetes.io/mode=Reconcile are server-side applied, restored
when deleted or edited, and pruned when their manifest goes away;
EnsureExists objects are only created when missing. It also approves kubelet
serving certificates whose names and addresses match the requesting node,
and labels nodes with their node-role. It notifies systemd (Type=notify)
once serving /healthz and /metrics, and pings its watchdog while its loops
make progress.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			cfg, err := addonmanager.LoadConfig(config)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			// client-go logs through klog: send it to the same handler.
			klog.SetSlogLogger(e.Log)
			ctx, cancel := cli.SignalContext()
			defer cancel()
			return addonmanager.Run(ctx, cfg, e.Log)
		},
	}
	cmd.Flags().StringVar(&config, "config", config, "addon manager configuration file (AddonManagerConfig)")
	return cmd
}
