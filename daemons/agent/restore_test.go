package agent

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot/snapshottest"
)

func testMember(dataDir string) agentconfig.EtcdMember {
	return agentconfig.EtcdMember{
		Unit: "etcd.service", ClientURL: "https://127.0.0.1:2379", Name: "master-1", DataDir: dataDir,
		InitialAdvertisePeerURLs: "https://10.77.0.11:2380",
		InitialCluster:           "master-0=https://10.77.0.10:2380,master-1=https://10.77.0.11:2380,master-2=https://10.77.0.12:2380",
		InitialClusterToken:      "demo",
	}
}

type restoreFixture struct {
	r        *etcdRestore
	control  *fakeControl
	commands *fakeCommands
	dataDir  string
}

// newRestoreFixture: a data directory holding "old", and an etcdutl that
// writes "new" into the directory it is given, after checking that etcd
// still runs (the slow part must not be inside the outage).
func newRestoreFixture(t *testing.T) *restoreFixture {
	t.Helper()
	root := t.TempDir()
	f := &restoreFixture{control: &fakeControl{}, commands: &fakeCommands{}, dataDir: filepath.Join(root, "etcd")}
	writeFile(t, filepath.Join(f.dataDir, "member", "snap", "db"), []byte("old"))
	f.commands.do = func(_ string, args []string) error {
		// etcd runs: no job yet, or the last one started it again.
		if jobs := f.control.done(); len(jobs) > 0 && !strings.HasPrefix(jobs[len(jobs)-1], "start ") {
			t.Errorf("etcdutl ran while etcd was stopped: %v", jobs)
		}
		out := args[indexOf(args, "--data-dir")+1]
		writeFile(t, filepath.Join(out, "member", "snap", "db"), []byte("new"))
		return nil
	}
	tick := time.Date(2026, 12, 4, 0, 0, 0, 0, time.UTC)
	f.r = &etcdRestore{machine: "master-1", member: testMember(f.dataDir), dir: filepath.Join(root, "snapshots"),
		etcdutl: "/usr/local/bin/etcdutl", units: f.control, run: f.commands.run,
		now: func() time.Time { tick = tick.Add(1500 * time.Millisecond); return tick },
		log: slog.New(slog.DiscardHandler)}
	return f
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func (f *restoreFixture) content(t *testing.T, dir string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "member", "snap", "db"))
	if err != nil {
		return err.Error()
	}
	return string(data)
}

// The restore's steps, in order, with the exact etcdutl command line; the
// old data directory kept aside, replaced by the next restore's.
func TestRestoreSequence(t *testing.T) {
	t.Parallel()
	f := newRestoreFixture(t)
	snap := snapshottest.Snapshot(3, 5)
	res, err := f.r.Run(context.Background(), bytes.NewReader(snap))
	if err != nil {
		t.Fatalf("%v\n%+v", err, res)
	}
	var steps []string
	for _, s := range res.Steps {
		steps = append(steps, s.Step)
		if s.Seconds != 1.5 || s.Error != "" {
			t.Errorf("step %+v", s)
		}
	}
	d := f.dataDir
	want := []string{
		"receive and verify the snapshot",
		"etcdutl snapshot restore into " + d + ".restoring",
		"stop etcd.service",
		"move " + d + " to " + d + ".before-restore, " + d + ".restoring to " + d,
		"start etcd.service",
	}
	if !reflect.DeepEqual(steps, want) {
		t.Errorf("steps:\n  %s\nwant:\n  %s", strings.Join(steps, "\n  "), strings.Join(want, "\n  "))
	}
	wantLine := "/usr/local/bin/etcdutl snapshot restore " + filepath.Join(f.r.dir, "restore.db") +
		" --data-dir " + d + ".restoring --name master-1" +
		" --initial-cluster master-0=https://10.77.0.10:2380,master-1=https://10.77.0.11:2380,master-2=https://10.77.0.12:2380" +
		" --initial-cluster-token demo --initial-advertise-peer-urls https://10.77.0.11:2380" +
		" --bump-revision 1000000000 --mark-compacted"
	if len(f.commands.lines) != 1 || strings.Join(f.commands.lines[0], " ") != wantLine {
		t.Errorf("commands %q\nwant %q", f.commands.lines, wantLine)
	}
	if jobs := f.control.done(); !reflect.DeepEqual(jobs, []string{"stop etcd.service", "start etcd.service"}) {
		t.Errorf("jobs %v", jobs)
	}
	if got := f.content(t, d); got != "new" {
		t.Errorf("data dir holds %q", got)
	}
	if got := f.content(t, d+".before-restore"); got != "old" || res.PreviousDataDir != d+".before-restore" {
		t.Errorf("previous data dir holds %q (%q)", got, res.PreviousDataDir)
	}
	if st, _ := os.Stat(d); st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v", st.Mode())
	}
	if res.Snapshot.Size != int64(len(snap)) || res.Member != "master-1" || res.Machine != "master-1" {
		t.Errorf("result %+v", res)
	}
	if _, err := os.Stat(d + ".restoring"); !os.IsNotExist(err) {
		t.Errorf("staging left: %v", err)
	}

	// Again: the older data directory aside is replaced.
	if _, err := f.r.Run(context.Background(), bytes.NewReader(snap)); err != nil {
		t.Fatal(err)
	}
	if got := f.content(t, d+".before-restore"); got != "new" {
		t.Errorf("second restore: previous holds %q", got)
	}
}

// Failures before the swap leave etcd alone; a failed start says where
// the old data is.
func TestRestoreFailures(t *testing.T) {
	t.Parallel()
	snap := snapshottest.Snapshot(3, 5)

	f := newRestoreFixture(t)
	bad := bytes.Clone(snap)
	bad[len(bad)-1] ^= 1
	res, err := f.r.Run(context.Background(), bytes.NewReader(bad))
	if !errors.Is(err, ErrBadSnapshot) || !errors.Is(err, etcdsnapshot.ErrCorrupt) || len(res.Steps) != 1 || res.Steps[0].Error == "" {
		t.Errorf("corrupt upload: %v %+v", err, res)
	}
	if len(f.commands.lines) != 0 || len(f.control.done()) != 0 || f.content(t, f.dataDir) != "old" {
		t.Errorf("a corrupt upload changed something: %v %v", f.commands.lines, f.control.done())
	}

	f = newRestoreFixture(t)
	f.commands.do = func(string, []string) error { return errors.New("data-dir not empty") }
	res, err = f.r.Run(context.Background(), bytes.NewReader(snap))
	if err == nil || len(res.Steps) != 2 || !strings.Contains(res.Error, "data-dir not empty") {
		t.Errorf("etcdutl failure: %v %+v", err, res)
	}
	if len(f.control.done()) != 0 || f.content(t, f.dataDir) != "old" {
		t.Errorf("etcdutl failure touched etcd: %v", f.control.done())
	}

	f = newRestoreFixture(t)
	f.control.fail = map[string]error{"start etcd.service": errors.New("systemd job failed")}
	res, err = f.r.Run(context.Background(), bytes.NewReader(snap))
	if err == nil || len(res.Steps) != 5 || !strings.Contains(res.Error, f.dataDir+".before-restore") {
		t.Errorf("start failure: %v %+v", err, res)
	}

	// A machine whose data directory is gone is restored all the same.
	f = newRestoreFixture(t)
	os.RemoveAll(f.dataDir)
	res, err = f.r.Run(context.Background(), bytes.NewReader(snap))
	if err != nil || res.PreviousDataDir != "" || f.content(t, f.dataDir) != "new" {
		t.Errorf("no data dir: %v %+v", err, res)
	}
}
