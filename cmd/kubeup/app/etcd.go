package app

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
	"kubeup.dev/kubeup/provision/cluster"
)

func newEtcdCommand(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "etcd",
		Short: "Take an etcd snapshot of a cluster, or restore a cluster from one",
		Long: `Every master also snapshots its etcd member on a schedule (spec.etcd in the
cluster config) into /var/lib/kubeup/etcd-snapshots; the agent reports them
as kubeup_etcd_snapshot_* metrics.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newEtcdSnapshotCommand(e), newEtcdRestoreCommand(e))
	return cmd
}

func newEtcdSnapshotCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var out string
	cmd := &cobra.Command{
		Use:   "snapshot --out FILE [--name NAME]",
		Short: "Fetch a fresh etcd snapshot from the first master to FILE",
		Long: `snapshot asks the first master's agent for a fresh snapshot of its etcd member
and writes it to FILE: beside it first, checked (etcd's sha256 of the
database, bbolt's meta pages), then renamed, so FILE is never half-written
and an existing FILE is only replaced by a good snapshot. The file holds
every object of the cluster, Secrets included: it is written 0600.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return &cli.ExitError{Code: 2, Err: errors.New("--out FILE is required")}
			}
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			res, err := cluster.EtcdSnapshot(cmd.Context(), o.DataDir, f.clusterName(), out)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "etcd snapshot of %s written to %s (%d bytes, sha256 %s) in %s\n",
				res.Machine, res.Path, res.Info.Size, res.Info.SHA256, res.Took.Round(100*time.Millisecond))
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&out, "out", "o", "", "file to write the snapshot to")
	return cmd
}

func newEtcdRestoreCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var from string
	cmd := &cobra.Command{
		Use:   "restore --from FILE [--name NAME]",
		Short: "Put the cluster back to an etcd snapshot",
		Long: `restore checks FILE (a snapshot from kubeup etcd snapshot, or a scheduled one
copied from a master), then, printing each step with its time:

  1. stops kube-apiserver on every master;
  2. restores etcd on every master at once: the agent receives the snapshot,
     checks it, rebuilds the member's data directory with etcdutl beside the
     old one (revisions moved a billion ahead and marked compacted, so every
     watcher lists again), stops etcd, keeps the old directory as
     /var/lib/etcd.before-restore, swaps the new one in and starts etcd;
  3. starts kube-apiserver on every master;
  4. restarts kube-controller-manager and kube-scheduler (their caches hold
     objects newer than the snapshot);
  5. waits until the API server's /readyz answers ok.

Everything written after the snapshot is lost. A FILE that is not a whole
snapshot is refused (exit status 2) before anything is touched; if a later
step fails, etcd and kube-apiserver are started again and the error names
the master and the step.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if from == "" {
				return &cli.ExitError{Code: 2, Err: errors.New("--from FILE is required")}
			}
			if _, err := etcdsnapshot.Verify(from); err != nil {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("%w: %w", cluster.ErrBadSnapshot, err)}
			}
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			name := f.clusterName()
			fmt.Fprintf(e.Stdout, "kubeup etcd restore: cluster %q from %s\n", name, from)
			err = cluster.EtcdRestore(cmd.Context(), o.DataDir, name, from, e.Stdout)
			if errors.Is(err, cluster.ErrBadSnapshot) {
				return &cli.ExitError{Code: 2, Err: err}
			}
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&from, "from", "f", "", "snapshot file to restore")
	return cmd
}
