package etcdsnapshot

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestFileNamesSortInTimeOrder(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 4, 5, 34, 52, 0, time.FixedZone("CET", 3600))
	if got := FileName(at); got != "etcd-20261204T043452Z.db" {
		t.Errorf("FileName = %s", got)
	}
}

// Prune keeps the newest N scheduled snapshots and nothing else is
// touched: the status file, an uploaded restore, temporary files.
func TestPruneKeepsNewest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var all []string
	for i := range 6 {
		// Written out of order: the names, not the write order, decide.
		n := FileName(base.Add(time.Duration((i*5)%6) * time.Hour))
		all = append(all, n)
		os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600)
	}
	for _, other := range []string{StatusFile, "restore.db", ".etcd-20990101T000000Z.db.123.tmp", "etcd-latest.db"} {
		os.WriteFile(filepath.Join(dir, other), []byte("x"), 0o600)
	}
	stale := filepath.Join(dir, ".etcd-20250101T000000Z.db.77.tmp")
	os.WriteFile(stale, []byte("x"), 0o600)
	os.Chtimes(stale, time.Now().Add(-2*time.Hour), time.Now().Add(-2*time.Hour))
	removed, err := Prune(dir, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{".etcd-20250101T000000Z.db.77.tmp", "etcd-20260101T010000Z.db", "etcd-20260101T000000Z.db"}
	if !reflect.DeepEqual(removed, want) {
		t.Errorf("removed %v, want %v", removed, want)
	}
	left, _ := List(dir)
	if want := []string{"etcd-20260101T050000Z.db", "etcd-20260101T040000Z.db", "etcd-20260101T030000Z.db", "etcd-20260101T020000Z.db"}; !reflect.DeepEqual(left, want) {
		t.Errorf("left %v, want %v", left, want)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 8 {
		t.Errorf("%d files left, want 4 snapshots + 4 others", len(entries))
	}
	if removed, _ := Prune(dir, 0); len(removed) != 3 {
		t.Errorf("keep 0 removed %v: the newest must stay", removed)
	}
	if names, err := List(filepath.Join(dir, "missing")); err != nil || names != nil {
		t.Errorf("missing dir: %v %v", names, err)
	}
}

func TestStatusRoundTrip(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if st, err := ReadStatus(dir); err != nil || st != (Status{}) {
		t.Errorf("no file: %+v %v", st, err)
	}
	want := Status{LastSuccess: time.Date(2026, 12, 4, 5, 0, 0, 0, time.UTC), LastFile: "etcd-20261204T050000Z.db",
		LastSize: 20 << 20, LastDuration: 1.5, LastFailure: time.Date(2026, 12, 4, 4, 0, 0, 0, time.UTC), LastError: "etcd: deadline exceeded"}
	if err := WriteStatus(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadStatus(dir)
	if err != nil || got != want {
		t.Errorf("read back %+v, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("left %v", entries)
	}
	os.WriteFile(filepath.Join(dir, StatusFile), []byte("{"), 0o600)
	if _, err := ReadStatus(dir); err == nil || !strings.Contains(err.Error(), StatusFile) {
		t.Errorf("broken file: %v", err)
	}
}

func TestDue(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) Status { return Status{LastSuccess: now.Add(-ago)} }
	for _, tc := range []struct {
		name     string
		st       Status
		interval time.Duration
		due      bool
		why      string
	}{
		{"off", at(48 * time.Hour), 0, false, "off"},
		{"never", Status{LastFailure: now}, time.Hour, true, "no snapshot has succeeded"},
		{"fresh", at(10 * time.Minute), time.Hour, false, "due in 45m0s"},
		{"almost", at(54 * time.Minute), time.Hour, false, "due in 1m0s"},
		{"within the slack", at(56 * time.Minute), time.Hour, true, "56m0s old"},
		{"overdue", at(3 * time.Hour), time.Hour, true, "3h0m0s old"},
		{"clock went back", at(-time.Hour), time.Hour, true, "clock went back"},
		{"daily, 20 h", at(20 * time.Hour), 24 * time.Hour, false, "due in"},
	} {
		due, why := Due(tc.st, tc.interval, now)
		if due != tc.due || !strings.Contains(why, tc.why) {
			t.Errorf("%s: due=%v (%s), want %v with %q", tc.name, due, why, tc.due, tc.why)
		}
	}
}
