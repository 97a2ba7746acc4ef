//go:build !noetcd

package app

import (
	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent"
)

// etcdCommands: the master build takes etcd snapshots.
var etcdCommands = []cli.Command{newEtcdSnapshotCommand}

func newEtcdSnapshotCommand(e *cli.Env) *cobra.Command {
	config := agentconfig.Path
	cmd := &cobra.Command{
		Use:   "etcd-snapshot",
		Short: "Take a scheduled etcd snapshot when one is due (kubeup-etcd-snapshot.service)",
		Long: `etcd-snapshot is run by kubeup-etcd-snapshot.timer every 10 minutes. When the
last good snapshot is older than the configured interval (etcd.snapshots in the
agent's configuration; 0s: off) it streams a snapshot of the local etcd member
into the snapshot directory, checks it (etcd's sha256 of the database, bbolt's
meta pages), names it etcd-<UTC time>.db, removes all but the newest kept ones
and records the outcome in status.json there, which the agent serves as the
kubeup_etcd_snapshot_* metrics. Otherwise it says when the next one is due.
A failure is recorded and exits 1.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := agent.LoadConfig(config)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			s, err := agent.NewScheduledSnapshot(cfg, e.Log)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			return s.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&config, "config", config, "agent configuration file (AgentConfig)")
	return cmd
}
