package app

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/google/nftables"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/daemons/probe"
)

func newWaitCommand(e *cli.Env) *cobra.Command {
	var (
		o        probe.Options
		openGate string
		weights  []string
	)
	cmd := &cobra.Command{
		Use:   "wait --url=URL | --node-of=AGENT_CONFIG",
		Short: "Wait until an endpoint is ready (a unit's ExecStartPost)",
		Long: `wait polls --url until it is ready and exits 0, or exits 1 after --timeout
with the last answer. http(s) URLs are ready when they answer 200; unix:///path
sockets when they answer gRPC's health check (or speak gRPC without it).
With --node-of instead, it waits until the Node of the machine an agent
configuration names exists with an address (kube-proxy's ExecStartPre).

As a unit's ExecStartPost it also watches the unit's main process
($MAINPID, which systemd sets there): if that exits, the wait fails at once,
so systemd restarts the unit instead of waiting out --timeout. With --stall,
a start whose answer stops changing for that long fails early too, while a
slow start that keeps progressing (fewer failing checks each time) may use
all of --timeout.

Once ready, --open-gate NAME opens that gate (see gate) and --cpu-weight
UNIT=WEIGHT (repeatable) sets CPU weights (see cpu-weight), in this process:
the API server's unit opens its port and lowers its start weights so. The
wait keeps only the capabilities those need (CAP_NET_ADMIN for the gate,
CAP_SYS_ADMIN for systemd), and none without them.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (o.URL == "") == (o.NodeOf == "") {
				return &cli.ExitError{Code: 2, Err: errors.New("give one of --url and --node-of")}
			}
			if o.MainPID == 0 {
				if v := os.Getenv("MAINPID"); v != "" {
					pid, err := strconv.Atoi(v)
					if err != nil {
						return &cli.ExitError{Code: 2, Err: fmt.Errorf("$MAINPID %q: %w", v, err)}
					}
					o.MainPID = pid
				}
			}
			gate := probe.Gate{Name: openGate}
			var keep []int
			if openGate != "" {
				if err := gate.CheckName(); err != nil {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("--open-gate: %w", err)}
				}
				keep = append(keep, unix.CAP_NET_ADMIN)
			}
			ws, err := parseWeights(weights)
			if err != nil {
				return err
			}
			if len(ws) > 0 {
				keep = append(keep, unix.CAP_SYS_ADMIN)
			}
			// Best effort: a probe that cannot drop what it does not
			// use still does its job.
			if err := probe.DropPrivileges(keep...); err != nil {
				e.Log.Warn("cannot drop privileges", "err", err)
			}
			ctx, cancel := cli.SignalContext()
			defer cancel()
			what := o.URL
			if what == "" {
				what = "the Node of " + o.NodeOf
			}
			o.Progress = func(elapsed time.Duration, answer error) {
				e.Log.Info("not ready yet", "probe", what, "after", elapsed.Round(100*time.Millisecond).String(), "answer", answer.Error())
			}
			start := time.Now()
			if err := probe.Run(ctx, o); err != nil {
				return &cli.ExitError{Code: 1, Err: err}
			}
			e.Log.Info("ready", "probe", what, "after", time.Since(start).Round(100*time.Millisecond).String())
			if openGate != "" {
				c, err := nftables.New()
				if err != nil {
					return fmt.Errorf("nftables: %w", err)
				}
				if err := gate.Open(c); err != nil {
					return err
				}
			}
			return setWeights(e, ws, false)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.URL, "url", "", "http://, https:// or unix:// URL to probe")
	f.StringVar(&o.NodeOf, "node-of", "", "agent configuration whose machine's Node to wait for")
	f.StringVar(&o.CACert, "cacert", "", "CA bundle that verifies the server (default: system roots)")
	f.StringVar(&o.Cert, "cert", "", "client certificate to present")
	f.StringVar(&o.Key, "key", "", "key of --cert")
	f.DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up after this long")
	f.DurationVar(&o.Interval, "interval", probe.DefaultInterval, "pause between tries")
	f.DurationVar(&o.Stall, "stall", 0, "give up when the answer has not changed for this long (0: only --timeout)")
	f.StringVar(&openGate, "open-gate", "", "once ready, open this gate (see gate open)")
	f.StringArrayVar(&weights, "cpu-weight", nil, "once ready, set UNIT=WEIGHT as cpu-weight does (repeatable)")
	f.IntVar(&o.MainPID, "main-pid", 0, "fail as soon as this process exits (default $MAINPID, set by systemd for ExecStartPost)")
	return cmd
}
