package app

import (
	"kubeup.dev/kubeup/cmd/internal/cli"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"kubeup.dev/kubeup/daemons/ui"
)

func newUICommand(e *cli.Env) *cobra.Command {
	cfg := ui.Config{
		Listen:        ":8080",
		PrometheusURL: "http://prometheus.kube-system.svc:9090",
		MetricsUIPath: ui.DefaultMetricsUIPath,
		LogsUIPath:    ui.DefaultLogsUIPath,
		Refresh:       30 * time.Second,
	}
	cmd := &cobra.Command{
		Use:   "ui",
		Short: "Serve the read-only cluster UI (the kubeup-ui addon, kube-system)",
		Long: `ui serves kubeup's read-only cluster overview over HTTP: nodes, each machine's
kubeup units from Prometheus, pods of all namespaces, recent events, and links
to the metrics and log UIs. It is meant to be reached through the API
server's service proxy:

  /api/v1/namespaces/kube-system/services/kubeup-ui:http/proxy/

It reads the API with its pod's ServiceAccount (list and watch only) and
answers only GET and HEAD. /api/overview is the same overview as JSON;
/healthz is 200 once its caches have synced.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			if err := cfg.Validate(); err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			// client-go logs through klog: send it to the same handler.
			klog.SetSlogLogger(e.Log)
			ctx, cancel := cli.SignalContext()
			defer cancel()
			return ui.Run(ctx, cfg, e.Log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Listen, "listen", cfg.Listen, "HTTP listen address")
	f.StringVar(&cfg.PrometheusURL, "prometheus", cfg.PrometheusURL, "Prometheus base URL for component health; empty turns it off")
	f.StringVar(&cfg.MetricsUIPath, "metrics-ui-path", cfg.MetricsUIPath, "path of the metrics UI on the API server (service proxy); empty hides the link")
	f.StringVar(&cfg.LogsUIPath, "logs-ui-path", cfg.LogsUIPath, "path of the log UI on the API server (service proxy); empty hides the link")
	f.StringVar(&cfg.ClusterName, "cluster-name", cfg.ClusterName, "cluster name for the page title")
	f.DurationVar(&cfg.Refresh, "refresh", cfg.Refresh, "page auto-refresh period; 0 turns it off")
	f.StringVar(&cfg.Kubeconfig, "kubeconfig", cfg.Kubeconfig, "kubeconfig, for running outside the cluster; default: the pod's ServiceAccount")
	return cmd
}
