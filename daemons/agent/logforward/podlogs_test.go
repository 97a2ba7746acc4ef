package logforward

import (
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseCRILine(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	for _, tc := range []struct {
		line string
		want CRILine
	}{
		{"2026-01-02T03:04:05.123456789Z stdout F hello world", CRILine{ts, "stdout", false, []byte("hello world")}},
		{"2026-01-02T03:04:05.123456789Z stderr P part", CRILine{ts, "stderr", true, []byte("part")}},
		{"2026-01-02T03:04:05.123456789Z stdout F ", CRILine{ts, "stdout", false, []byte("")}},
		{"2026-01-02T03:04:05.123456789Z stdout F", CRILine{ts, "stdout", false, nil}},
		{"2026-01-02T03:04:05.123456789Z stdout F:x  two spaces", CRILine{ts, "stdout", false, []byte(" two spaces")}},
		{"2026-01-02T04:04:05.123456789+01:00 stdout F zone", CRILine{ts, "stdout", false, []byte("zone")}},
	} {
		got, err := ParseCRILine([]byte(tc.line))
		if err != nil {
			t.Errorf("%q: %v", tc.line, err)
			continue
		}
		if !got.Time.Equal(tc.want.Time) || got.Stream != tc.want.Stream || got.Partial != tc.want.Partial || string(got.Text) != string(tc.want.Text) {
			t.Errorf("%q: got %+v", tc.line, got)
		}
	}
	for _, bad := range []string{"", "plain text", "2026-01-02T03:04:05Z stdin F x", "2026-01-02T03:04:05Z stdout X x", "yesterday stdout F x"} {
		if _, err := ParseCRILine([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// podDir is a fake /var/log/pods.
type podDir struct {
	t    *testing.T
	root string
	n    int
}

func (d *podDir) container(ns, pod, container string) string {
	dir := filepath.Join(d.root, ns+"_"+pod+"_0123-uid", container)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		d.t.Fatal(err)
	}
	return dir
}

// write appends CRI lines ("stream tag text") to a file, timestamps
// increasing.
func (d *podDir) write(path string, lines ...string) {
	d.t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		d.n++
		ts := time.Date(2026, 1, 1, 0, 0, 0, d.n*1000, time.UTC).Format(time.RFC3339Nano)
		fmt.Fprintf(f, "%s %s\n", ts, l)
	}
}

func (d *podDir) lines(from, n int, prefix string) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf("stdout F %s %d", prefix, i))
	}
	return out
}

func newPodLogs(t *testing.T, root, state string, out *collector) *PodLogs {
	return NewPodLogs(PodLogsConfig{Dir: root, StateDir: state, Submit: out.submit,
		Origin: Origin{Cluster: "demo", Machine: "node-0", Role: "node"}, Interval: 10 * time.Millisecond})
}

func poll(t *testing.T, p *PodLogs) {
	t.Helper()
	if err := p.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func numbered(prefix string, from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf("%s %d", prefix, i))
	}
	return out
}

func TestPodLogsFields(t *testing.T) {
	d := &podDir{t: t, root: t.TempDir()}
	c := d.container("kube-system", "coredns-abc", "coredns")
	d.write(filepath.Join(c, "0.log"), "stderr F [INFO] plugin/reload: Running")
	out := &collector{}
	poll(t, newPodLogs(t, d.root, t.TempDir(), out))
	if len(out.recs) != 1 {
		t.Fatalf("%d records", len(out.recs))
	}
	r := out.recs[0]
	fields, _ := DecodeFields(r.Body)
	want := map[string]any{"message": "[INFO] plugin/reload: Running", "namespace": "kube-system", "pod": "coredns-abc",
		"container": "coredns", "stream": "stderr", "machine": "node-0", "role": "node", "cluster": "demo", "source": "pod"}
	if r.Tag != "kubeup.pods" || !r.Time.Equal(time.Date(2026, 1, 1, 0, 0, 0, 1000, time.UTC)) || !reflect.DeepEqual(fields, want) {
		t.Errorf("record %s %v %v", r.Tag, r.Time, fields)
	}
}

// Partial lines are joined per stream, up to the full line; the offset
// saved while a line is incomplete stays before its first piece.
func TestPodLogsPartialLines(t *testing.T) {
	d := &podDir{t: t, root: t.TempDir()}
	state := t.TempDir()
	log := filepath.Join(d.container("default", "app", "main"), "0.log")
	d.write(log, "stdout F first", "stdout P hello, ", "stderr F an error", "stdout P wor")
	out := &collector{}
	p := newPodLogs(t, d.root, state, out)
	poll(t, p)
	if got := out.messages(t); !slices.Equal(got, []string{"first", "an error"}) {
		t.Fatalf("before the F line: %q", got)
	}
	// The agent restarts mid-line: the pieces are read again, and the
	// stderr line after the first piece with them (the documented repeat).
	d.write(log, "stdout F ld", "stdout F next")
	p = newPodLogs(t, d.root, state, out)
	poll(t, p)
	want := []string{"first", "an error", "an error", "hello, world", "next"}
	if got := out.messages(t); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	// The joined line carries its first piece's time.
	if r := out.recs[3]; !r.Time.Equal(time.Date(2026, 1, 1, 0, 0, 0, 2000, time.UTC)) {
		t.Errorf("joined line time %v", r.Time)
	}
}

// The kubelet's rotation: 0.log is renamed, containerd may still write to
// the renamed file until it reopens 0.log; the old file is read to its end
// before the new one, and the gzip of the old one is never read.
func TestPodLogsRotation(t *testing.T) {
	d := &podDir{t: t, root: t.TempDir()}
	dir := d.container("default", "app", "main")
	live := filepath.Join(dir, "0.log")
	rotated := live + ".20260101-000010"
	out := &collector{}
	p := newPodLogs(t, d.root, t.TempDir(), out)

	d.write(live, d.lines(0, 3, "line")...)
	poll(t, p)
	d.write(live, d.lines(3, 2, "line")...)
	if err := os.Rename(live, rotated); err != nil {
		t.Fatal(err)
	}
	d.write(rotated, d.lines(5, 1, "line")...) // containerd, before the reopen
	poll(t, p)                                 // no successor yet: keep following the renamed file
	d.write(rotated, d.lines(6, 1, "line")...)
	d.write(live, d.lines(7, 3, "line")...) // the reopen: a new 0.log
	poll(t, p)
	d.write(live, d.lines(10, 1, "line")...)
	// The next rotation gzips the previous one.
	gz, _ := os.Create(rotated + ".gz")
	zw := gzip.NewWriter(gz)
	data, _ := os.ReadFile(rotated)
	zw.Write(data)
	zw.Close()
	gz.Close()
	os.Remove(rotated)
	poll(t, p)
	poll(t, p)

	if got := out.messages(t); !slices.Equal(got, numbered("line", 0, 11)) {
		t.Errorf("got %q", got)
	}
	if len(p.files) != 1 {
		t.Errorf("tracking %d files after the old one was gzipped", len(p.files))
	}
}

// New pods are picked up from their first line; a removed pod's last lines
// are read through the open file before it is forgotten; a container's
// earlier restart is read before the current one.
func TestPodLogsNewAndRemovedPods(t *testing.T) {
	d := &podDir{t: t, root: t.TempDir()}
	out := &collector{}
	p := newPodLogs(t, d.root, t.TempDir(), out)
	poll(t, p) // no /var/log/pods entries yet

	a := d.container("default", "a", "main")
	d.write(filepath.Join(a, "1.log"), d.lines(2, 1, "a")...)
	d.write(filepath.Join(a, "0.log"), d.lines(0, 2, "a")...)
	poll(t, p)
	d.write(filepath.Join(a, "1.log"), d.lines(3, 2, "a")...)
	if err := os.RemoveAll(filepath.Dir(a)); err != nil {
		t.Fatal(err)
	}
	b := d.container("default", "b", "main")
	d.write(filepath.Join(b, "0.log"), d.lines(0, 1, "b")...)
	poll(t, p)
	want := append(numbered("a", 0, 5), "b 0")
	if got := out.messages(t); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if len(p.files) != 1 {
		t.Errorf("still tracking %d files", len(p.files))
	}
}

// Offsets survive a restart of the agent, including a rotation that
// happened while it was down.
func TestPodLogsResume(t *testing.T) {
	d := &podDir{t: t, root: t.TempDir()}
	state := t.TempDir()
	dir := d.container("default", "app", "main")
	live := filepath.Join(dir, "0.log")
	out := &collector{}
	d.write(live, d.lines(0, 3, "line")...)
	poll(t, newPodLogs(t, d.root, state, out))

	// Down: more lines, a rotation, lines in the new file.
	d.write(live, d.lines(3, 2, "line")...)
	os.Rename(live, live+".20260101-000010")
	d.write(live, d.lines(5, 2, "line")...)

	p := newPodLogs(t, d.root, state, out)
	poll(t, p)
	if got := out.messages(t); !slices.Equal(got, numbered("line", 0, 7)) {
		t.Errorf("got %q", got)
	}
}

// A failed Submit leaves the offsets: the task's next run reads the same
// lines again.
func TestPodLogsSubmitFailure(t *testing.T) {
	d := &podDir{t: t, root: t.TempDir()}
	state := t.TempDir()
	d.write(filepath.Join(d.container("default", "app", "main"), "0.log"), d.lines(0, 3, "line")...)
	out := &collector{fail: errors.New("disk full")}
	p := newPodLogs(t, d.root, state, out)
	if err := p.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("run: %v", err)
	}
	out.mu.Lock()
	out.fail = nil
	out.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "3 records", func() bool { return out.len() == 3 })
	time.Sleep(30 * time.Millisecond)
	cancel()
	<-done
	if got := out.messages(t); !slices.Equal(got, numbered("line", 0, 3)) {
		t.Errorf("got %q", got)
	}
	data, _ := os.ReadFile(filepath.Join(state, "pod-logs.json"))
	if !strings.Contains(string(data), `"dir":"default_app_0123-uid/main","name":"0.log"`) {
		t.Errorf("state %s", data)
	}
}
