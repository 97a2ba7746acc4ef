package app

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/daemons/probe"
)

func newGateCommand(e *cli.Env) *cobra.Command {
	var (
		port      uint16
		allow     []string
		weights   []string
		afterBoot bool
	)
	cmd := &cobra.Command{
		Use:   "gate close|open NAME",
		Short: "Refuse a local TCP port to clients while a unit starts (its ExecStartPre/Post)",
		Long: `gate close NAME --port=PORT [--allow=ADDR...] refuses new TCP connections to
PORT with a TCP reset from every source but the --allow addresses, in an
nftables table of its own (inet ` + probe.TablePrefix + `NAME), replacing one a
failed start left; gate open NAME deletes that table (and succeeds when
there is none). Each is one netlink transaction: the API server's unit
closes its port while it starts, and its readiness wait (wait --open-gate)
opens it once /readyz answers on ::1.

--cpu-weight UNIT=WEIGHT (repeatable; --after-boot as for cpu-weight) sets
CPU weights first, in the same process: the API server's unit raises its
start weights there (a process started on a saturated master costs seconds).`,
		Args: cobra.ExactArgs(2),
		RunE: func(_ *cobra.Command, args []string) error {
			g := probe.Gate{Name: args[1], Port: port}
			if args[0] != "close" && args[0] != "open" {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("gate %q: want close or open", args[0])}
			}
			if err := g.CheckName(); err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			if args[0] == "close" && port == 0 {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("gate close: give --port")}
			}
			for _, a := range allow {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("--allow %q: want an IP address", a)}
				}
				g.Allow = append(g.Allow, addr)
			}
			ws, err := parseWeights(weights)
			if err != nil {
				return err
			}
			if err := setWeights(e, ws, afterBoot); err != nil {
				return err
			}
			c, err := nftables.New()
			if err != nil {
				return fmt.Errorf("nftables: %w", err)
			}
			if args[0] == "close" {
				err = g.Close(c)
			} else {
				err = g.Open(c)
			}
			if err != nil {
				return err
			}
			e.Log.Debug("gate "+args[0]+"d", "name", g.Name, "port", port)
			return nil
		},
	}
	f := cmd.Flags()
	f.Uint16Var(&port, "port", 0, "the TCP port to refuse (close)")
	f.StringSliceVar(&allow, "allow", nil, "a source address let through while closed (repeatable)")
	f.StringArrayVar(&weights, "cpu-weight", nil, "UNIT=WEIGHT to set first, as cpu-weight does (repeatable)")
	f.BoolVar(&afterBoot, "after-boot", false, "with --cpu-weight: leave the weights while the machine is booting")
	return cmd
}
