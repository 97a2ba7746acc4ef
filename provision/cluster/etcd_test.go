package cluster

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot/snapshottest"
)

// fakeAgent records what the restore asked of one master, into a log
// shared by all masters.
type fakeAgent struct {
	name    string
	log     *callLog
	fail    map[string]error
	restore func(data []byte) (*agent.RestoreResult, error)
}

type callLog struct {
	mu    sync.Mutex
	calls []string
}

func (l *callLog) add(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls = append(l.calls, s)
}

func (a *fakeAgent) call(what string) error {
	a.log.add(a.name + ": " + what)
	return a.fail[what]
}

func (a *fakeAgent) StartUnit(_ context.Context, u string) error   { return a.call("start " + u) }
func (a *fakeAgent) StopUnit(_ context.Context, u string) error    { return a.call("stop " + u) }
func (a *fakeAgent) RestartUnit(_ context.Context, u string) error { return a.call("restart " + u) }

func (a *fakeAgent) RestoreEtcd(_ context.Context, r io.Reader, size int64) (*agent.RestoreResult, error) {
	data, _ := io.ReadAll(r)
	if int64(len(data)) != size {
		return nil, errors.New("size does not match the body")
	}
	if err := a.call("restore etcd"); err != nil {
		return &agent.RestoreResult{Machine: a.name, Steps: []agent.RestoreStep{{Step: "start etcd.service", Error: err.Error()}}}, err
	}
	return &agent.RestoreResult{Machine: a.name, Steps: []agent.RestoreStep{{Step: "receive and verify the snapshot", Seconds: 0.2}}}, nil
}

func newTestRestore(t *testing.T, masters ...string) (*etcdRestore, *callLog, *bytes.Buffer) {
	log := &callLog{}
	var out bytes.Buffer
	r := &etcdRestore{masters: masters, agents: map[string]restoreAgent{}, progress: &out, now: time.Now,
		waitAPI: func(context.Context) error { log.add("wait /readyz"); return nil }}
	for _, m := range masters {
		r.agents[m] = &fakeAgent{name: m, log: log}
	}
	return r, log, &out
}

func snapshotFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "etcd.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The order a restore drives the masters in, for one master and for
// three: API servers down everywhere before any etcd is restored; etcd
// restored on all; API servers up; controllers restarted; /readyz.
func TestEtcdRestoreSequence(t *testing.T) {
	t.Parallel()
	file := snapshotFile(t, snapshottest.Snapshot(3, 1))
	for _, masters := range [][]string{{"master-0"}, {"master-0", "master-1", "master-2"}} {
		r, log, out := newTestRestore(t, masters...)
		if err := r.run(context.Background(), file); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		phase := func(what string) []string {
			var p []string
			for _, m := range masters {
				p = append(p, m+": "+what)
			}
			return p
		}
		var want [][]string
		for _, w := range []string{"stop kube-apiserver.service", "restore etcd", "start kube-apiserver.service"} {
			want = append(want, phase(w))
		}
		var restarts []string
		for _, m := range masters {
			restarts = append(restarts, m+": restart kube-controller-manager.service", m+": restart kube-scheduler.service")
		}
		want = append(want, restarts, []string{"wait /readyz"})
		// Within a phase the masters run at once: compare phase by phase.
		got := log.calls
		for _, p := range want {
			if len(got) < len(p) {
				t.Fatalf("%d masters: calls %v, want %v", len(masters), log.calls, want)
			}
			head := slices.Clone(got[:len(p)])
			slices.Sort(head)
			sorted := slices.Clone(p)
			slices.Sort(sorted)
			if !reflect.DeepEqual(head, sorted) {
				t.Errorf("%d masters: phase %v, want %v (all calls %v)", len(masters), head, sorted, log.calls)
			}
			got = got[len(p):]
		}
		for _, line := range []string{"verify " + file, "stop kube-apiserver on " + strings.Join(masters, ", "),
			"master-0: 0.2s", "wait for the API server's /readyz", "etcd restored from " + file} {
			if !strings.Contains(out.String(), line) {
				t.Errorf("output lacks %q:\n%s", line, out)
			}
		}
	}
}

// A corrupt file is refused before any master is touched; a failed
// restore brings etcd and the API servers back up and names the master.
func TestEtcdRestoreFailures(t *testing.T) {
	t.Parallel()
	good := snapshottest.Snapshot(3, 1)
	bad := bytes.Clone(good)
	bad[len(bad)-40] ^= 1
	r, log, _ := newTestRestore(t, "master-0")
	file := snapshotFile(t, bad)
	err := r.run(context.Background(), file)
	if !errors.Is(err, ErrBadSnapshot) || !strings.Contains(err.Error(), file) || len(log.calls) != 0 {
		t.Errorf("corrupt file: %v, calls %v", err, log.calls)
	}
	if err := r.run(context.Background(), filepath.Join(t.TempDir(), "missing.db")); !errors.Is(err, ErrBadSnapshot) {
		t.Errorf("missing file: %v", err)
	}

	r, log, out := newTestRestore(t, "master-0", "master-1")
	r.agents["master-1"].(*fakeAgent).fail = map[string]error{"restore etcd": errors.New("etcdutl: data-dir not empty")}
	err = r.run(context.Background(), snapshotFile(t, good))
	if err == nil || !strings.Contains(err.Error(), "master-1: etcdutl: data-dir not empty") {
		t.Errorf("failed restore: %v", err)
	}
	for _, want := range []string{"master-0: start etcd.service", "master-1: start etcd.service", "master-0: start kube-apiserver.service", "master-1: start kube-apiserver.service"} {
		if !slices.Contains(log.calls, want) {
			t.Errorf("not brought back: %q missing from %v", want, log.calls)
		}
	}
	if slices.Contains(log.calls, "wait /readyz") || !strings.Contains(out.String(), "FAILED restore etcd") ||
		!strings.Contains(out.String(), "master-1: 0.0s   start etcd.service FAILED: etcdutl") {
		t.Errorf("output:\n%s\ncalls %v", out, log.calls)
	}
}
