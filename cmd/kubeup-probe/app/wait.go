package app

import (
	"errors"
	"time"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/daemons/probe"
)

func newWaitCommand(e *cli.Env) *cobra.Command {
	var o probe.Options
	cmd := &cobra.Command{
		Use:   "wait --url=URL | --node-of=AGENT_CONFIG",
		Short: "Wait until an endpoint is ready (a unit's ExecStartPost)",
		Long: `wait polls --url until it is ready and exits 0, or exits 1 after --timeout
with the last answer. http(s) URLs are ready when they answer 200; unix:///path
sockets when they answer gRPC's health check (or speak gRPC without it).
With --node-of instead, it waits until the Node of the machine an agent
configuration names exists with an address (kube-proxy's ExecStartPre).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (o.URL == "") == (o.NodeOf == "") {
				return &cli.ExitError{Code: 2, Err: errors.New("give one of --url and --node-of")}
			}
			// Best effort: a probe that cannot drop what it does not
			// use still does its job.
			if err := probe.DropPrivileges(); err != nil {
				e.Log.Warn("cannot drop privileges", "err", err)
			}
			ctx, cancel := cli.SignalContext()
			defer cancel()
			if err := probe.Run(ctx, o); err != nil {
				return &cli.ExitError{Code: 1, Err: err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "http://, https:// or unix:// URL to probe")
	f.StringVar(&o.NodeOf, "node-of", "", "agent configuration whose machine's Node to wait for")
	f.StringVar(&o.CACert, "cacert", "", "CA bundle that verifies the server (default: system roots)")
	f.StringVar(&o.Cert, "cert", "", "client certificate to present")
	f.StringVar(&o.Key, "key", "", "key of --cert")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up after this long")
	f.DurationVar(&o.Interval, "interval", time.Second, "pause between tries")
	return cmd
}
