package logforward

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseJournalEntry(t *testing.T) {
	ts := time.UnixMicro(1767225600123456)
	for _, tc := range []struct {
		name string
		line string
		want JournalEntry
	}{
		{"string message",
			`{"__CURSOR":"s=1;i=1","__REALTIME_TIMESTAMP":"1767225600123456","MESSAGE":"hello","PRIORITY":"3","SYSLOG_IDENTIFIER":"kubelet","_PID":"42","_SYSTEMD_UNIT":"kubelet.service"}`,
			JournalEntry{Cursor: "s=1;i=1", Time: ts, Message: "hello", Priority: 3, Identifier: "kubelet", PID: 42, SystemUnit: "kubelet.service"}},
		{"byte array message (not UTF-8, or control characters)",
			`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1767225600123456","MESSAGE":[104,105,27,91,48,109],"PRIORITY":"6"}`,
			JournalEntry{Cursor: "c", Time: ts, Message: "hi\x1b[0m", Priority: 6}},
		{"null message (too large without --all)",
			`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1767225600123456","MESSAGE":null}`,
			JournalEntry{Cursor: "c", Time: ts, Priority: 6}},
		{"field given twice",
			`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1767225600123456","MESSAGE":["one",[116,119,111]],"SYSLOG_IDENTIFIER":["a","b"]}`,
			JournalEntry{Cursor: "c", Time: ts, Message: "one\ntwo", Priority: 6, Identifier: "a"}},
		{"no priority: info; no identifier: _COMM",
			`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1767225600123456","MESSAGE":"x","_COMM":"etcd"}`,
			JournalEntry{Cursor: "c", Time: ts, Message: "x", Priority: 6, Identifier: "etcd"}},
		{"priority out of range: info",
			`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1767225600123456","MESSAGE":"x","PRIORITY":"9"}`,
			JournalEntry{Cursor: "c", Time: ts, Message: "x", Priority: 6}},
		{"systemd about a unit",
			`{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1767225600123456","MESSAGE":"Started kubelet.service.","_PID":"1","_SYSTEMD_UNIT":"init.scope","UNIT":"kubelet.service","SYSLOG_IDENTIFIER":"systemd","PRIORITY":"6"}`,
			JournalEntry{Cursor: "c", Time: ts, Message: "Started kubelet.service.", Priority: 6, Identifier: "systemd", PID: 1, SystemUnit: "init.scope", AboutUnit: "kubelet.service"}},
	} {
		got, err := ParseJournalEntry([]byte(tc.line))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.name, got, tc.want)
		}
	}
	for _, bad := range []string{`not json`, `{"MESSAGE":"no cursor"}`, `{"__CURSOR":"c","__REALTIME_TIMESTAMP":"soon"}`} {
		if _, err := ParseJournalEntry([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestLevels(t *testing.T) {
	var got []string
	for p := -1; p <= 8; p++ {
		got = append(got, Level(p))
	}
	want := []string{"info", "emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "info"}
	if !slices.Equal(got, want) {
		t.Errorf("levels %q", got)
	}
}

func TestJournalFollowArgs(t *testing.T) {
	got := strings.Join(JournalFollowArgs([]string{"a.service", "b.service"}, []string{"kubeup"}, ""), " ")
	want := "--follow --output=json --all --no-tail --no-pager --quiet " +
		"--output-fields=MESSAGE,PRIORITY,SYSLOG_IDENTIFIER,_COMM,_PID,_SYSTEMD_UNIT,UNIT,OBJECT_SYSTEMD_UNIT,COREDUMP_UNIT " +
		"--boot " +
		"_SYSTEMD_UNIT=a.service _SYSTEMD_UNIT=b.service + _PID=1 UNIT=a.service UNIT=b.service + " +
		"_UID=0 OBJECT_SYSTEMD_UNIT=a.service OBJECT_SYSTEMD_UNIT=b.service + " +
		"MESSAGE_ID=fc2e22bc6ee647b6b90729ab34a250b1 _UID=0 COREDUMP_UNIT=a.service COREDUMP_UNIT=b.service + " +
		"SYSLOG_IDENTIFIER=kubeup"
	if got != want {
		t.Errorf("args\n%s\nwant\n%s", got, want)
	}
	resumed := JournalFollowArgs([]string{"a.service"}, nil, "s=abc;i=9")
	if !slices.Contains(resumed, "--after-cursor=s=abc;i=9") || slices.Contains(resumed, "--boot") || slices.Contains(resumed, "+SYSLOG_IDENTIFIER") {
		t.Errorf("resumed args %q", resumed)
	}
}

func TestJournalRecordFields(t *testing.T) {
	j := NewJournal(JournalConfig{Units: []string{"kubelet.service"}, Identifiers: []string{"kubeup"},
		Origin: Origin{Cluster: "demo", Machine: "node-0", Role: "node"}})
	at := time.UnixMicro(1767225600123456)
	for _, tc := range []struct {
		entry JournalEntry
		unit  string
	}{
		{JournalEntry{SystemUnit: "kubelet.service", Identifier: "kubelet"}, "kubelet.service"},
		{JournalEntry{SystemUnit: "init.scope", AboutUnit: "kubelet.service", Identifier: "systemd"}, "kubelet.service"},
		{JournalEntry{SystemUnit: "session-1.scope", Identifier: "kubeup"}, "kubeup"},
		{JournalEntry{Identifier: "kubeup"}, "kubeup"},
	} {
		tc.entry.Time, tc.entry.Message, tc.entry.Priority, tc.entry.PID = at, "line 1", 4, 77
		r := j.Record(tc.entry)
		if r.Tag != "kubeup.journal" || !r.Time.Equal(at) {
			t.Errorf("tag %q time %v", r.Tag, r.Time)
		}
		fields, err := DecodeFields(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]any{
			"message": "line 1", "unit": tc.unit, "identifier": tc.entry.Identifier,
			"machine": "node-0", "role": "node", "cluster": "demo",
			"priority": int64(4), "level": "warning", "pid": int64(77), "source": "journal",
		}
		if !reflect.DeepEqual(fields, want) {
			t.Errorf("fields\n%v\nwant\n%v", fields, want)
		}
	}
	// Invalid UTF-8 is replaced, not sent (the collector's protobuf would refuse the batch).
	r := j.Record(JournalEntry{Message: "bad \xff byte"})
	fields, _ := DecodeFields(r.Body)
	if fields["message"] != "bad \uFFFD byte" {
		t.Errorf("message %q", fields["message"])
	}
}

// fakeJournalctl serves canned JSON lines, as journalctl would after the
// cursor in its arguments, then blocks like --follow until ctx ends.
type fakeJournalctl struct {
	mu      sync.Mutex
	lines   []string // entry i has cursor "c<i>"
	calls   [][]string
	exitErr error // returned after the lines instead of blocking
}

func (f *fakeJournalctl) add(n int, format string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for range n {
		i := len(f.lines)
		f.lines = append(f.lines, fmt.Sprintf(`{"__CURSOR":"c%d","__REALTIME_TIMESTAMP":"%d","MESSAGE":"%s","SYSLOG_IDENTIFIER":"kubeup","_PID":"9"}`,
			i, 1767225600000000+int64(i), fmt.Sprintf(format, i)))
	}
}

func (f *fakeJournalctl) run(ctx context.Context, args []string, w io.Writer) error {
	f.mu.Lock()
	f.calls = append(f.calls, args)
	start := 0
	for _, a := range args {
		if c, ok := strings.CutPrefix(a, "--after-cursor=c"); ok {
			fmt.Sscan(c, &start)
			start++
		}
	}
	lines := slices.Clone(f.lines[min(start, len(f.lines)):])
	exitErr := f.exitErr
	f.mu.Unlock()
	// Like journalctl's stdout into a pipe: 4 KiB stdio buffers.
	bw := bufio.NewWriterSize(w, 4096)
	for _, l := range lines {
		if _, err := bw.WriteString(l + "\n"); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if exitErr != nil {
		return exitErr
	}
	<-ctx.Done()
	return ctx.Err()
}

func (f *fakeJournalctl) lastArgs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[len(f.calls)-1]
}

// collector is a Submit that keeps records, optionally failing.
type collector struct {
	mu   sync.Mutex
	recs []Record
	fail error
}

func (c *collector) submit(_ context.Context, recs []Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return c.fail
	}
	c.recs = append(c.recs, slices.Clone(recs)...)
	return nil
}

func (c *collector) messages(t *testing.T) []string {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, r := range c.recs {
		f, err := DecodeFields(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f["message"].(string))
	}
	return out
}

func (c *collector) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.recs)
}

// TestJournalCursorResume: the cursor is saved after delivery, a new
// Journal (the agent restarted) resumes after it, and entries it delivered
// are not read again.
func TestJournalCursorResume(t *testing.T) {
	state := t.TempDir()
	jc := &fakeJournalctl{}
	jc.add(5, "line %d")
	out := &collector{}
	newJournal := func() *Journal {
		return NewJournal(JournalConfig{Units: []string{"kubelet.service"}, Identifiers: []string{"kubeup"},
			StateDir: state, Run: jc.run, Submit: out.submit})
	}
	j := newJournal()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- j.Run(ctx) }()
	waitFor(t, "5 records", func() bool { return out.len() == 5 })
	if !slices.Contains(jc.lastArgs(), "--boot") {
		t.Errorf("first start without a cursor: args %q", jc.lastArgs())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(filepath.Join(state, "journal.cursor")); string(data) != "c4\n" {
		t.Errorf("cursor file %q", data)
	}

	jc.add(3, "after restart %d")
	j = newJournal()
	ctx, cancel = context.WithCancel(context.Background())
	go func() { done <- j.Run(ctx) }()
	waitFor(t, "8 records", func() bool { return out.len() == 8 })
	cancel()
	<-done
	if !slices.Contains(jc.lastArgs(), "--after-cursor=c4") {
		t.Errorf("restart args %q", jc.lastArgs())
	}
	want := []string{"line 0", "line 1", "line 2", "line 3", "line 4", "after restart 5", "after restart 6", "after restart 7"}
	if got := out.messages(t); !slices.Equal(got, want) {
		t.Errorf("messages %q", got)
	}
}

// A Submit that fails (the buffer's disk is full) leaves the cursor where
// it was: the entries are read again on the task's restart.
func TestJournalSubmitFailureKeepsCursor(t *testing.T) {
	state := t.TempDir()
	jc := &fakeJournalctl{}
	jc.add(3, "line %d")
	out := &collector{fail: errors.New("no space left on device")}
	j := NewJournal(JournalConfig{Units: []string{"x.service"}, StateDir: state, Run: jc.run, Submit: out.submit})
	err := j.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("run: %v", err)
	}
	if j.Cursor() != "" {
		t.Errorf("cursor moved to %q", j.Cursor())
	}
	out.mu.Lock()
	out.fail = nil
	out.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- j.Run(ctx) }()
	waitFor(t, "3 records", func() bool { return out.len() == 3 })
	cancel()
	<-done
	if j.Cursor() != "c2" {
		t.Errorf("cursor %q", j.Cursor())
	}
}

// journalctl exiting is a task failure (the supervisor restarts it); a
// cursor it refuses is dropped so the restart does not fail forever.
func TestJournalctlExit(t *testing.T) {
	state := t.TempDir()
	os.WriteFile(filepath.Join(state, "journal.cursor"), []byte("garbage\n"), 0o600)
	jc := &fakeJournalctl{exitErr: errors.New("exit status 1: Failed to seek to cursor: Invalid argument")}
	j := NewJournal(JournalConfig{Units: []string{"x.service"}, StateDir: state, Run: jc.run, Submit: (&collector{}).submit})
	if err := j.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "seek to cursor") {
		t.Fatalf("run: %v", err)
	}
	if !slices.Contains(jc.lastArgs(), "--after-cursor=garbage") {
		t.Errorf("args %q", jc.lastArgs())
	}
	jc.exitErr = errors.New("exit status 1")
	j.Run(context.Background())
	if !slices.Contains(jc.lastArgs(), "--boot") {
		t.Errorf("after a refused cursor: args %q", jc.lastArgs())
	}
}

func TestReadLineLimit(t *testing.T) {
	long := strings.Repeat("x", 200)
	r := strings.NewReader("short\n" + long + "\nlast")
	br := bufio.NewReaderSize(r, 16)
	var got []string
	var tooLong int
	for {
		line, tl, err := readLine(br, 100)
		if tl {
			tooLong++
		} else if len(line) > 0 {
			got = append(got, string(line))
		}
		if err != nil {
			break
		}
	}
	if !slices.Equal(got, []string{"short", "last"}) || tooLong != 1 {
		t.Errorf("lines %q, too long %d", got, tooLong)
	}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
