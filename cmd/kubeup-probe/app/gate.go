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
		port  uint16
		allow []string
	)
	cmd := &cobra.Command{
		Use:   "gate close|open NAME",
		Short: "Refuse a local TCP port to clients while a unit starts (its ExecStartPre/Post)",
		Long: `gate close NAME --port=PORT [--allow=ADDR...] refuses new TCP connections to
PORT with a TCP reset from every source but the --allow addresses, in an
nftables table of its own (inet ` + probe.TablePrefix + `NAME), replacing one a
failed start left; gate open NAME deletes that table (and succeeds when
there is none). Each is one netlink transaction: the API server's unit
closes its port while it starts and opens it once /readyz answers on ::1.`,
		Args:      cobra.ExactArgs(2),
		ValidArgs: []string{"close", "open"},
		RunE: func(_ *cobra.Command, args []string) error {
			g := probe.Gate{Name: args[1], Port: port}
			for _, a := range allow {
				addr, err := netip.ParseAddr(a)
				if err != nil {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("--allow %q: want an IP address", a)}
				}
				g.Allow = append(g.Allow, addr)
			}
			c, err := nftables.New()
			if err != nil {
				return fmt.Errorf("nftables: %w", err)
			}
			switch args[0] {
			case "close":
				err = g.Close(c)
			case "open":
				err = g.Open(c)
			default:
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("gate %q: want close or open", args[0])}
			}
			if err != nil {
				return err
			}
			e.Log.Debug("gate "+args[0]+"d", "name", g.Name, "port", port)
			return nil
		},
	}
	cmd.Flags().Uint16Var(&port, "port", 0, "the TCP port to refuse (close)")
	cmd.Flags().StringSliceVar(&allow, "allow", nil, "a source address let through while closed (repeatable)")
	return cmd
}
