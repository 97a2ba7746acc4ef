package app

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/provision/cluster"
)

func newCertsCommand(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "Renew the cluster's certificates now, or list them with their expiry",
		Long: `Machines renew their certificates by themselves when a third of their
lifetime (spec.pki.leafLifetime) is left: masters re-issue theirs with the CA
keys they hold, nodes' agents ask for theirs through CertificateSigningRequests,
kubelets rotate theirs through CSRs. certs renew does now what needs the host
(the admin certificate of the kubeconfig kubeup kubeconfig prints) and asks
every machine to renew everything it renews by itself; certs check lists every
certificate of every machine with its expiry.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newCertsRenewCommand(e), newCertsCheckCommand(e))
	return cmd
}

func newCertsRenewCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "renew [--name NAME]",
		Short: "Renew the admin certificate and ask every machine to renew its certificates now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			admin, machines, err := cluster.RenewCertificates(cmd.Context(), o.DataDir, f.clusterName())
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "admin certificate (host, kubeup kubeconfig) renewed: valid until %s\n", expiry(admin.NotAfter))
			tw := tabwriter.NewWriter(e.Stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tCERTIFICATE\tHOW\tRESULT\tVALID UNTIL")
			failed := 0
			for _, m := range machines {
				if m.Err != nil {
					failed++
					fmt.Fprintf(tw, "%s\t-\t-\tfailed: %v\t-\n", m.Machine, m.Err)
					continue
				}
				if len(m.Renewed) == 0 {
					fmt.Fprintf(tw, "%s\t-\t-\tnothing it renews by itself\t-\n", m.Machine)
				}
				for _, c := range m.Renewed {
					result := "renewed"
					if c.Error != "" {
						failed++
						result = "failed: " + c.Error
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Machine, c.Path, c.Method, result, expiry(c.NotAfter))
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			if failed > 0 {
				return fmt.Errorf("%d renewals failed", failed)
			}
			return nil
		},
	}
	f.add(cmd)
	return cmd
}

func newCertsCheckCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	cmd := &cobra.Command{
		Use:   "check [--name NAME]",
		Short: "List every certificate of every machine with its expiry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			admin, machines, err := cluster.CheckCertificates(cmd.Context(), o.DataDir, f.clusterName())
			if err != nil {
				return err
			}
			return writeCertificates(e.Stdout, admin.NotAfter, machines)
		},
	}
	f.add(cmd)
	return cmd
}

func writeCertificates(w io.Writer, admin time.Time, machines []cluster.MachineCertificates) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MACHINE\tCERTIFICATE\tSUBJECT\tVALID UNTIL")
	fmt.Fprintf(tw, "(host)\tadmin (kubeup kubeconfig)\tCN=kubernetes-admin,O=system:masters\t%s\n", expiry(admin))
	unreachable := 0
	for _, m := range machines {
		if m.Err != nil {
			unreachable++
			fmt.Fprintf(tw, "%s\t-\t-\tunknown: %v\n", m.Machine, m.Err)
		}
		for _, c := range m.Existing {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Machine, c.Path, c.Subject, expiry(c.NotAfter))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if unreachable > 0 {
		return fmt.Errorf("%d machines did not answer", unreachable)
	}
	return nil
}

// expiry is a time and how far away it is: "2026-12-01T10:30:00Z (in 29m)".
func expiry(t time.Time) string {
	left := time.Until(t).Round(time.Minute)
	if left < 0 {
		return fmt.Sprintf("%s (EXPIRED %s ago)", t.UTC().Format(time.RFC3339), -left)
	}
	return fmt.Sprintf("%s (in %s)", t.UTC().Format(time.RFC3339), left)
}
