package logforward

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// auditDir is a fake /var/log/kubernetes/audit written the way the API
// server's lumberjack writes it.
type auditDir struct {
	t    *testing.T
	dir  string
	live string
	n    int
}

func newAuditDir(t *testing.T) *auditDir {
	dir := t.TempDir()
	return &auditDir{t: t, dir: dir, live: filepath.Join(dir, "audit.log")}
}

// event is one audit event line: user deletes (or gets) deployment name.
func (d *auditDir) event(user, verb, name string) string {
	d.n++
	ts := time.Date(2026, 1, 1, 0, 0, d.n, 0, time.UTC).Format(time.RFC3339Nano)
	return fmt.Sprintf(`{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"Request","auditID":"id-%d","stage":"ResponseComplete",`+
		`"requestURI":"/apis/apps/v1/namespaces/default/deployments/%s","verb":"%s","user":{"username":"%s","groups":["system:masters"]},`+
		`"objectRef":{"resource":"deployments","namespace":"default","name":"%s","apiGroup":"apps","apiVersion":"v1"},`+
		`"responseStatus":{"metadata":{},"code":200},"requestReceivedTimestamp":"%s","stageTimestamp":"%s"}`, d.n, name, verb, user, name, ts, ts)
}

func (d *auditDir) append(path string, lines ...string) {
	d.t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer f.Close()
	for _, l := range lines {
		if _, err := f.WriteString(l); err != nil {
			d.t.Fatal(err)
		}
	}
}

// events appends n complete events for deployments prefix-<i>.
func (d *auditDir) events(from, n int, prefix string) {
	var lines []string
	for i := from; i < from+n; i++ {
		lines = append(lines, d.event("kubernetes-admin", "delete", fmt.Sprintf("%s-%d", prefix, i))+"\n")
	}
	d.append(d.live, lines...)
}

// rotate renames the live file as lumberjack does.
func (d *auditDir) rotate(at time.Time) {
	d.t.Helper()
	name := "audit-" + at.UTC().Format("2006-01-02T15-04-05.000") + ".log"
	if err := os.Rename(d.live, filepath.Join(d.dir, name)); err != nil {
		d.t.Fatal(err)
	}
}

// auditSink collects submitted records' names and fields.
type auditSink struct {
	recs []map[string]any
	fail error
}

func (s *auditSink) submit(_ context.Context, recs []Record) error {
	if s.fail != nil {
		return s.fail
	}
	for _, r := range recs {
		if r.Tag != AuditTag {
			return fmt.Errorf("tag %q", r.Tag)
		}
		f, err := DecodeFields(r.Body)
		if err != nil {
			return err
		}
		s.recs = append(s.recs, f)
	}
	return nil
}

func (s *auditSink) names() []string {
	var out []string
	for _, r := range s.recs {
		out = append(out, fmt.Sprint(r["name"]))
	}
	return out
}

func seq(prefix string, from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

func newTestAuditLog(d *auditDir, state string, s *auditSink) *AuditLog {
	return NewAuditLog(AuditLogConfig{Path: d.live, StateDir: state, Origin: Origin{Cluster: "c", Machine: "master-0", Role: "master"}, Submit: s.submit})
}

// An event's who, what and outcome are fields; the whole event is the
// message; its time is the event's.
func TestAuditRecordFields(t *testing.T) {
	t.Parallel()
	d := newAuditDir(t)
	line := d.event("kubernetes-admin", "delete", "web")
	d.append(d.live, line+"\n", "not json\n")
	s := &auditSink{}
	if err := newTestAuditLog(d, t.TempDir(), s).Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(s.recs) != 2 {
		t.Fatalf("%d records, want 2", len(s.recs))
	}
	want := map[string]any{"message": line, "user": "kubernetes-admin", "verb": "delete", "resource": "deployments",
		"namespace": "default", "name": "web", "code": int64(200), "machine": "master-0", "role": "master", "cluster": "c", "source": "audit"}
	for k, v := range want {
		if got := s.recs[0][k]; fmt.Sprint(got) != fmt.Sprint(v) {
			t.Errorf("field %s = %v, want %v", k, got, v)
		}
	}
	if s.recs[1]["message"] != "not json" || s.recs[1]["source"] != "audit" || s.recs[1]["user"] != "" {
		t.Errorf("a line that is not an event: %v", s.recs[1])
	}
	e := d.event("u", "patch", "x")
	e = strings.Replace(e, `"objectRef":{"resource":"deployments"`, `"objectRef":{"resource":"deployments","subresource":"scale"`, 1)
	r := newTestAuditLog(d, t.TempDir(), s).record([]byte(e))
	f, _ := DecodeFields(r.Body)
	if f["resource"] != "deployments/scale" || !r.Time.Equal(time.Date(2026, 1, 1, 0, 0, d.n, 0, time.UTC)) {
		t.Errorf("subresource record %v at %s", f, r.Time)
	}
}

// Every event exactly once, in order, across polls, a rotation (the
// renamed file read to its end before the new one), a partial line, a
// restart of the agent, and a rotated file deleted once read.
func TestAuditLogFollowsRotation(t *testing.T) {
	t.Parallel()
	d := newAuditDir(t)
	state := t.TempDir()
	s := &auditSink{}
	a := newTestAuditLog(d, state, s)
	ctx := context.Background()
	if err := a.Poll(ctx); err != nil { // no file yet
		t.Fatal(err)
	}
	d.events(0, 3, "a")
	half := d.event("kubernetes-admin", "delete", "a-3")
	d.append(d.live, half[:20]) // being written
	if err := a.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.names(); !slices.Equal(got, seq("a", 0, 3)) {
		t.Fatalf("after the first poll: %v", got)
	}
	d.append(d.live, half[20:]+"\n")
	d.rotate(time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC))
	d.events(4, 2, "a") // the new live file
	if err := a.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.names(); !slices.Equal(got, seq("a", 0, 6)) {
		t.Fatalf("after the rotation: %v", got)
	}

	// A restarted agent resumes from the saved offsets: nothing again.
	d.events(6, 2, "a")
	b := newTestAuditLog(d, state, s)
	if err := b.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.names(); !slices.Equal(got, seq("a", 0, 8)) {
		t.Fatalf("after a restart: %v", got)
	}
	rotated, _ := filepath.Glob(filepath.Join(d.dir, "audit-*.log"))
	if len(rotated) != 1 {
		t.Fatalf("rotated files %v", rotated)
	}
	os.Remove(rotated[0]) // --audit-log-maxbackup
	if err := b.Poll(ctx); err != nil {
		t.Fatal(err)
	}
	if got := s.names(); !slices.Equal(got, seq("a", 0, 8)) {
		t.Fatalf("after the rotated file went: %v", got)
	}
	if len(b.files) != 1 {
		t.Errorf("still following %d files", len(b.files))
	}
}

// A rotation while the agent was down: the renamed file is resumed at its
// saved offset (it is known by inode), then the new file read whole.
func TestAuditLogRotationWhileDown(t *testing.T) {
	t.Parallel()
	d := newAuditDir(t)
	state := t.TempDir()
	s := &auditSink{}
	d.events(0, 2, "b")
	if err := newTestAuditLog(d, state, s).Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	d.events(2, 2, "b")
	d.rotate(time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC))
	d.events(4, 1, "b")
	d.rotate(time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC))
	d.events(5, 2, "b")
	if err := newTestAuditLog(d, state, s).Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.names(); !slices.Equal(got, seq("b", 0, 7)) {
		t.Errorf("got %v", got)
	}
}

// Offsets move only once Submit accepted the records: a failed Submit
// sends them again at the next poll.
func TestAuditLogAdvancesOnlyOnAck(t *testing.T) {
	t.Parallel()
	d := newAuditDir(t)
	state := t.TempDir()
	s := &auditSink{fail: errors.New("aggregator away")}
	a := newTestAuditLog(d, state, s)
	d.events(0, 3, "c")
	if err := a.Poll(context.Background()); err == nil {
		t.Fatal("a failed Submit did not fail the poll")
	}
	s.fail = nil
	// A restart after the failure too: nothing was saved as delivered.
	if err := newTestAuditLog(d, state, s).Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.names(); !slices.Equal(got, seq("c", 0, 3)) {
		t.Errorf("got %v", got)
	}
}

// An event past the limit is dropped and counted, and the ones around it
// are forwarded.
func TestAuditLogDropsOversizedEvents(t *testing.T) {
	t.Parallel()
	d := newAuditDir(t)
	s := &auditSink{}
	a := newTestAuditLog(d, t.TempDir(), s)
	d.events(0, 1, "d")
	d.append(d.live, `{"verb":"create","x":"`+strings.Repeat("x", maxAuditEvent)+"\"}\n")
	d.events(1, 1, "d")
	if err := a.Poll(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := s.names(); !slices.Equal(got, seq("d", 0, 2)) {
		t.Errorf("got %v", got)
	}
	if n := testutil.ToFloat64(a.cfg.Metrics.Dropped.WithLabelValues(DropTooLarge)); n != 1 {
		t.Errorf("too_large drops %v, want 1", n)
	}
}
