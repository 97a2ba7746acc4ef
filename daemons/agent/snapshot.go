package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
)

// SnapshotFunc opens a stream of a fresh snapshot of the local etcd
// member, as Maintenance.Snapshot sends it (the database, then its
// sha256). Closing it releases the connection.
type SnapshotFunc func(ctx context.Context) (io.ReadCloser, error)

// snapshotTimeout bounds one snapshot: etcd's quota is 2 GiB by default,
// which a master's disk writes in well under this.
const snapshotTimeout = 10 * time.Minute

// ErrNoSnapshots: the configuration has no etcd snapshots (a node, or a
// master rendered before they existed).
var ErrNoSnapshots = errors.New("config etcd.snapshots: this machine takes no etcd snapshots")

// ScheduledSnapshot is one run of `kubeup-agent etcd-snapshot`: a snapshot
// of the local member when the last good one is older than the interval,
// into the snapshot directory, then pruning to the newest Keep, with the
// outcome recorded in the status file either way.
type ScheduledSnapshot struct {
	Config agentconfig.EtcdSnapshots
	Fetch  SnapshotFunc
	Now    func() time.Time
	Log    *slog.Logger
}

// NewScheduledSnapshot builds the run from an agent configuration.
func NewScheduledSnapshot(cfg *agentconfig.Config, log *slog.Logger) (*ScheduledSnapshot, error) {
	if cfg.Etcd == nil || cfg.Etcd.Snapshots == nil {
		return nil, ErrNoSnapshots
	}
	fetch, err := newEtcdSnapshotFunc(*cfg.Etcd)
	if err != nil {
		return nil, err
	}
	return &ScheduledSnapshot{Config: *cfg.Etcd.Snapshots, Fetch: fetch, Now: time.Now, Log: log}, nil
}

// Run takes a snapshot if one is due. A failure is recorded in the status
// file and returned, so that the oneshot unit fails where everyone sees it.
func (s *ScheduledSnapshot) Run(ctx context.Context) error {
	interval, err := time.ParseDuration(s.Config.Interval)
	if err != nil {
		return fmt.Errorf("config etcd.snapshots.interval: %w", err)
	}
	dir := s.Config.Dir
	st, err := etcdsnapshot.ReadStatus(dir)
	if err != nil {
		// A broken status file must not stop the snapshots: take one,
		// and the write below replaces it.
		s.Log.Warn("cannot read the snapshot status; taking a snapshot", "err", err)
		st = etcdsnapshot.Status{}
	}
	start := s.Now()
	due, why := etcdsnapshot.Due(st, interval, start)
	if !due {
		s.Log.Info("no etcd snapshot due", "why", why)
		return nil
	}
	s.Log.Info("taking an etcd snapshot", "why", why, "dir", dir)
	name := etcdsnapshot.FileName(start)
	info, err := s.take(ctx, name)
	if err != nil {
		st.LastFailure, st.LastError = s.Now().UTC(), err.Error()
		if werr := etcdsnapshot.WriteStatus(dir, st); werr != nil {
			s.Log.Error("cannot record the failure", "err", werr)
		}
		return fmt.Errorf("etcd snapshot: %w", err)
	}
	took := s.Now().Sub(start)
	st.LastSuccess, st.LastFile, st.LastSize, st.LastDuration = start.UTC(), name, info.Size, took.Seconds()
	if err := etcdsnapshot.WriteStatus(dir, st); err != nil {
		return fmt.Errorf("record the snapshot: %w", err)
	}
	s.Log.Info("etcd snapshot taken", "file", name, "bytes", info.Size, "sha256", info.SHA256, "took", took.Round(time.Millisecond))
	removed, err := etcdsnapshot.Prune(dir, s.Config.Keep)
	if len(removed) > 0 {
		s.Log.Info("pruned old etcd snapshots", "removed", removed, "keep", s.Config.Keep)
	}
	if err != nil {
		return fmt.Errorf("prune etcd snapshots: %w", err)
	}
	return nil
}

func (s *ScheduledSnapshot) take(ctx context.Context, name string) (etcdsnapshot.Info, error) {
	ctx, cancel := context.WithTimeout(ctx, snapshotTimeout)
	defer cancel()
	rc, err := s.Fetch(ctx)
	if err != nil {
		return etcdsnapshot.Info{}, err
	}
	defer rc.Close()
	return etcdsnapshot.Save(s.Config.Dir, name, rc)
}

var (
	snapshotSuccessDesc = prometheus.NewDesc("kubeup_etcd_snapshot_last_success_timestamp_seconds",
		"Unix time of the last good scheduled etcd snapshot on this master (0: none yet).", nil, nil)
	snapshotFailureDesc = prometheus.NewDesc("kubeup_etcd_snapshot_last_failure_timestamp_seconds",
		"Unix time of the last failed scheduled etcd snapshot on this master (0: none).", nil, nil)
	snapshotSizeDesc = prometheus.NewDesc("kubeup_etcd_snapshot_size_bytes",
		"Size of the last good scheduled etcd snapshot.", nil, nil)
	snapshotCountDesc = prometheus.NewDesc("kubeup_etcd_snapshots",
		"Scheduled etcd snapshots kept on this master.", nil, nil)
	snapshotIntervalDesc = prometheus.NewDesc("kubeup_etcd_snapshot_interval_seconds",
		"Configured interval between scheduled etcd snapshots (0: off), for alerts that need no copy of the config.", nil, nil)
)

// snapshotCollector reads the status file and lists the snapshot
// directory at scrape time: the snapshots are taken by another process
// (the oneshot unit), and a scrape every 30 s reads a few hundred bytes.
type snapshotCollector struct {
	cfg agentconfig.EtcdSnapshots
}

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{snapshotSuccessDesc, snapshotFailureDesc, snapshotSizeDesc, snapshotCountDesc, snapshotIntervalDesc} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	interval, _ := time.ParseDuration(c.cfg.Interval) // validated
	ch <- prometheus.MustNewConstMetric(snapshotIntervalDesc, prometheus.GaugeValue, interval.Seconds())
	if names, err := etcdsnapshot.List(c.cfg.Dir); err == nil {
		ch <- prometheus.MustNewConstMetric(snapshotCountDesc, prometheus.GaugeValue, float64(len(names)))
	}
	st, err := etcdsnapshot.ReadStatus(c.cfg.Dir)
	if err != nil {
		return // absent, which an alert on absent() sees
	}
	ch <- prometheus.MustNewConstMetric(snapshotSuccessDesc, prometheus.GaugeValue, unixSeconds(st.LastSuccess))
	ch <- prometheus.MustNewConstMetric(snapshotFailureDesc, prometheus.GaugeValue, unixSeconds(st.LastFailure))
	ch <- prometheus.MustNewConstMetric(snapshotSizeDesc, prometheus.GaugeValue, float64(st.LastSize))
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixMilli()) / 1e3
}
