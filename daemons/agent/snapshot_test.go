package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot/snapshottest"
)

// A day of scheduled runs with an injected clock: a snapshot when due and
// only then, pruned to Keep, failures recorded without touching the last
// good one, and "0s" off.
func TestScheduledSnapshot(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "etcd-snapshots")
	now := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	stream := &fakeSnapshots{data: snapshottest.Snapshot(4, 1)}
	s := &ScheduledSnapshot{
		Config: agentconfig.EtcdSnapshots{Dir: dir, Interval: "1h", Keep: 2},
		Fetch:  stream.open,
		Now:    func() time.Time { return now },
		Log:    slog.New(slog.DiscardHandler),
	}
	run := func(at time.Duration) error {
		now = time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC).Add(at)
		return s.Run(context.Background())
	}
	status := func() etcdsnapshot.Status {
		st, err := etcdsnapshot.ReadStatus(dir)
		if err != nil {
			t.Fatal(err)
		}
		return st
	}

	if err := run(0); err != nil {
		t.Fatal(err)
	}
	if st := status(); st.LastFile != "etcd-20261204T100000Z.db" || st.LastSize != int64(len(stream.data)) ||
		!st.LastSuccess.Equal(now) || !st.LastFailure.IsZero() {
		t.Errorf("after the first run: %+v", st)
	}
	for _, at := range []time.Duration{10 * time.Minute, 30 * time.Minute, 50 * time.Minute} {
		if err := run(at); err != nil {
			t.Fatal(err)
		}
	}
	if stream.opened != 1 {
		t.Errorf("%d snapshots within the hour, want 1", stream.opened)
	}
	for _, at := range []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour} {
		if err := run(at); err != nil {
			t.Fatal(err)
		}
	}
	names, _ := etcdsnapshot.List(dir)
	if want := []string{"etcd-20261204T130000Z.db", "etcd-20261204T120000Z.db"}; !reflect.DeepEqual(names, want) {
		t.Errorf("kept %v, want %v", names, want)
	}

	// A truncated stream: refused, recorded, the last good one stays.
	good := status()
	stream.data = stream.data[:len(stream.data)-snapshottest.PageSize]
	err := run(4 * time.Hour)
	if !errors.Is(err, etcdsnapshot.ErrCorrupt) {
		t.Errorf("truncated stream: %v", err)
	}
	st := status()
	if !st.LastSuccess.Equal(good.LastSuccess) || st.LastFile != good.LastFile || !st.LastFailure.Equal(now) ||
		!strings.Contains(st.LastError, "not a whole etcd snapshot") {
		t.Errorf("after a failure: %+v", st)
	}
	// etcd down: recorded too, and the next run tries again at once.
	stream.openErr = errEtcdDown
	if err := run(4*time.Hour + 10*time.Minute); !errors.Is(err, errEtcdDown) {
		t.Errorf("etcd down: %v", err)
	}
	if st := status(); !strings.Contains(st.LastError, "etcd down") {
		t.Errorf("after etcd down: %+v", st)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("files %v, want 2 snapshots and the status", entries)
	}

	s.Config.Interval = "0s"
	before := stream.opened
	if err := run(48 * time.Hour); err != nil || stream.opened != before {
		t.Errorf("snapshots off: %v, %d opens", err, stream.opened-before)
	}
}

func TestSnapshotMetrics(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := &snapshotCollector{cfg: agentconfig.EtcdSnapshots{Dir: dir, Interval: "1h", Keep: 24}}
	want := `
# HELP kubeup_etcd_snapshot_interval_seconds Configured interval between scheduled etcd snapshots (0: off), for alerts that need no copy of the config.
# TYPE kubeup_etcd_snapshot_interval_seconds gauge
kubeup_etcd_snapshot_interval_seconds 3600
# HELP kubeup_etcd_snapshot_last_failure_timestamp_seconds Unix time of the last failed scheduled etcd snapshot on this master (0: none).
# TYPE kubeup_etcd_snapshot_last_failure_timestamp_seconds gauge
kubeup_etcd_snapshot_last_failure_timestamp_seconds 0
# HELP kubeup_etcd_snapshot_last_success_timestamp_seconds Unix time of the last good scheduled etcd snapshot on this master (0: none yet).
# TYPE kubeup_etcd_snapshot_last_success_timestamp_seconds gauge
kubeup_etcd_snapshot_last_success_timestamp_seconds 0
# HELP kubeup_etcd_snapshot_size_bytes Size of the last good scheduled etcd snapshot.
# TYPE kubeup_etcd_snapshot_size_bytes gauge
kubeup_etcd_snapshot_size_bytes 0
# HELP kubeup_etcd_snapshots Scheduled etcd snapshots kept on this master.
# TYPE kubeup_etcd_snapshots gauge
kubeup_etcd_snapshots 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Errorf("before any snapshot: %v", err)
	}
	for _, n := range []string{"etcd-20261204T100000Z.db", "etcd-20261204T110000Z.db", "restore.db"} {
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600)
	}
	etcdsnapshot.WriteStatus(dir, etcdsnapshot.Status{
		LastSuccess: time.Unix(1796382000, 0), LastFile: "etcd-20261204T110000Z.db", LastSize: 25 << 20,
		LastFailure: time.Unix(1796378400, 500e6), LastError: "boom"})
	want = `
# HELP kubeup_etcd_snapshot_last_failure_timestamp_seconds Unix time of the last failed scheduled etcd snapshot on this master (0: none).
# TYPE kubeup_etcd_snapshot_last_failure_timestamp_seconds gauge
kubeup_etcd_snapshot_last_failure_timestamp_seconds 1.7963784005e+09
# HELP kubeup_etcd_snapshot_last_success_timestamp_seconds Unix time of the last good scheduled etcd snapshot on this master (0: none yet).
# TYPE kubeup_etcd_snapshot_last_success_timestamp_seconds gauge
kubeup_etcd_snapshot_last_success_timestamp_seconds 1.796382e+09
# HELP kubeup_etcd_snapshot_size_bytes Size of the last good scheduled etcd snapshot.
# TYPE kubeup_etcd_snapshot_size_bytes gauge
kubeup_etcd_snapshot_size_bytes 2.62144e+07
# HELP kubeup_etcd_snapshots Scheduled etcd snapshots kept on this master.
# TYPE kubeup_etcd_snapshots gauge
kubeup_etcd_snapshots 2
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "kubeup_etcd_snapshot_last_failure_timestamp_seconds",
		"kubeup_etcd_snapshot_last_success_timestamp_seconds", "kubeup_etcd_snapshot_size_bytes", "kubeup_etcd_snapshots"); err != nil {
		t.Errorf("after snapshots: %v", err)
	}
	// A broken status file: the status metrics go absent (alertable with
	// absent()), the count stays.
	os.WriteFile(filepath.Join(dir, etcdsnapshot.StatusFile), []byte("{"), 0o600)
	if n := testutil.CollectAndCount(c); n != 2 {
		t.Errorf("%d metrics with a broken status file, want 2", n)
	}
}
