package app

import (
	"context"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/daemons/apilb"
)

func newAPILBCommand(e *cli.Env) *cobra.Command {
	o := apilb.Options{}
	var metrics string
	cmd := &cobra.Command{
		Use:   "apilb --listen=ADDR --backends=HOST:PORT,...",
		Short: "Load-balance this machine's API clients over every API server (the kubeup-apilb unit)",
		Long: `apilb listens on the machine's loopback and passes each connection (TLS
untouched) to a healthy API server: kubelet, kube-proxy, kubeup-agent and the
addon manager reach the API through it, so the machine keeps its API while any
one master is gone. It is a command of kubeup-agent, not a binary of its own,
so the images carry no second copy of the same libraries and the two
processes share the binary's pages.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.Log = e.Log
			b, err := apilb.New(o)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			errc := make(chan error, 2)
			go func() { errc <- b.Run(ctx) }()
			if metrics != "" {
				go func() { errc <- b.ServeMetrics(ctx, metrics) }()
			}
			e.Log.Info("serving", "listen", b.Addr().String(), "backends", o.Backends, "prefer", o.Prefer)
			daemon.SdNotify(false, daemon.SdNotifyReady)
			select {
			case err = <-errc:
			case <-ctx.Done():
			}
			cancel()
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:7445", "address the API clients dial")
	f.StringSliceVar(&o.Backends, "backends", nil, "the API servers, host:port, comma-separated")
	f.StringVar(&o.Prefer, "prefer", "", "the backend to use while it is healthy (a master's own API server)")
	f.StringVar(&o.CAFile, "cacert", "", "CA that signed the API servers' certificates (health checks)")
	f.StringVar(&o.CertFile, "cert", "", "client certificate for the health checks (a TCP connect while it is missing)")
	f.StringVar(&o.KeyFile, "key", "", "its key")
	f.DurationVar(&o.Interval, "interval", apilb.DefaultInterval, "time between health checks of a backend")
	f.DurationVar(&o.Timeout, "timeout", apilb.DefaultTimeout, "timeout of one health check")
	f.IntVar(&o.FailAfter, "fail-after", apilb.DefaultFailAfter, "consecutive failed checks that take a backend out")
	f.StringVar(&metrics, "metrics-listen", "127.0.0.1:7446", "address of /metrics, /healthz, /readyz and /status (empty: none)")
	return cmd
}
