package logforward

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"kubeup.dev/kubeup/daemons/agent/logforward/forwardtest"
)

type testForwarder struct {
	*Forwarder
	metrics *Metrics
	cancel  context.CancelFunc
	done    chan error
}

func startForwarder(t *testing.T, addr, dir string, maxBytes int64, ackTimeout time.Duration) *testForwarder {
	t.Helper()
	dial, err := fluentDialer(addr, time.Second, time.Second, ackTimeout)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics()
	f := NewForwarder(ForwarderConfig{BufferDir: dir, BufferMaxBytes: maxBytes, Dial: dial, Metrics: m})
	ctx, cancel := context.WithCancel(context.Background())
	tf := &testForwarder{Forwarder: f, metrics: m, cancel: cancel, done: make(chan error, 1)}
	go func() { tf.done <- f.Run(ctx) }()
	t.Cleanup(tf.stop)
	return tf
}

func (tf *testForwarder) stop() {
	tf.cancel()
	<-tf.done
	tf.done <- nil // stop is idempotent
}

func newServer(t *testing.T, stopped bool) *forwardtest.Server {
	t.Helper()
	newFn := forwardtest.NewServer
	if stopped {
		newFn = forwardtest.NewStoppedServer
	}
	s, err := newFn()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

func serverMessages(s *forwardtest.Server) []string {
	var out []string
	for _, e := range s.Events() {
		out = append(out, e.Record["message"].(string))
	}
	return out
}

func submitAll(t *testing.T, f *Forwarder, from, n, batch int) {
	t.Helper()
	for i := from; i < from+n; i += batch {
		if err := f.Submit(context.Background(), recs(i, min(batch, from+n-i))); err != nil {
			t.Fatal(err)
		}
	}
}

// Records reach the server with their tag, event time (to the nanosecond)
// and fields.
func TestForwardDirect(t *testing.T) {
	srv := newServer(t, false)
	f := startForwarder(t, srv.Addr, t.TempDir(), 1<<20, time.Second)
	submitAll(t, f.Forwarder, 0, 20, 7)
	evs := srv.Events()
	if len(evs) != 20 {
		t.Fatalf("%d events", len(evs))
	}
	e := evs[3]
	if e.Tag != "kubeup.journal" || !e.Time.Equal(time.Unix(1767225600, 3)) || e.Record["message"] != "line 00003" ||
		e.Record["priority"] != int64(6) || e.Record["source"] != "journal" {
		t.Errorf("event %+v", e)
	}
	if st := f.Status(); !st.Up || st.BufferedRecords != 0 {
		t.Errorf("status %+v", st)
	}
	if got := testutil.ToFloat64(f.metrics.Sent); got != 20 {
		t.Errorf("sent %v", got)
	}
}

// TestForwardOutage is the loss test in small: the aggregator is down while
// records arrive, they go to the disk buffer; when it comes back the buffer
// is resent in order before newer records, and each record arrives
// exactly once.
func TestForwardOutage(t *testing.T) {
	srv := newServer(t, true)
	f := startForwarder(t, srv.Addr, t.TempDir(), 64<<20, time.Second)

	submitAll(t, f.Forwarder, 0, 2000, 100)
	st := f.Status()
	if st.Up || st.BufferedRecords != 2000 || st.BufferedBytes == 0 || st.LastError == "" {
		t.Fatalf("during the outage: %+v", st)
	}
	if got := testutil.ToFloat64(f.metrics.buffered); got != 2000 {
		t.Errorf("kubeup_log_entries_buffered %v", got)
	}
	if testutil.ToFloat64(f.metrics.Errors) == 0 {
		t.Error("no forward errors counted")
	}

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	// Records submitted while the buffer drains queue behind it.
	submitted := make(chan error, 1)
	go func() {
		for i := 2000; i < 2500; i += 10 {
			if err := f.Submit(context.Background(), recs(i, 10)); err != nil {
				submitted <- err
				return
			}
		}
		submitted <- nil
	}()
	waitFor(t, "2500 records at the server", func() bool { return srv.Count() >= 2500 })
	if err := <-submitted; err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // anything extra would show up now
	if got := serverMessages(srv); !slices.Equal(got, wantLines(0, 2500)) {
		t.Errorf("server got %d records; first out of place: %s", len(got), firstDiff(got, wantLines(0, 2500)))
	}
	waitFor(t, "buffer empty", func() bool { return f.Status().BufferedRecords == 0 })
	if st := f.Status(); !st.Up {
		t.Errorf("after the outage: %+v", st)
	}
	if got := testutil.ToFloat64(f.metrics.Sent); got != 2500 {
		t.Errorf("sent %v", got)
	}
}

func firstDiff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("#%d %s (want %s)", i, got[i], want[i])
		}
	}
	return fmt.Sprintf("lengths %d and %d", len(got), len(want))
}

// A server that takes records but does not ack them: each send times out,
// the record is buffered and resent once acks flow again. It is stored
// once because this server, like a pipeline that refuses, keeps nothing
// it did not ack.
func TestForwardNoAck(t *testing.T) {
	srv := newServer(t, false)
	srv.NoAck.Store(true)
	f := startForwarder(t, srv.Addr, t.TempDir(), 1<<20, 100*time.Millisecond)
	submitAll(t, f.Forwarder, 0, 5, 5)
	if st := f.Status(); st.Up || st.BufferedRecords != 5 {
		t.Fatalf("status %+v", st)
	}
	srv.NoAck.Store(false)
	waitFor(t, "5 records", func() bool { return srv.Count() == 5 })
	if got := serverMessages(srv); !slices.Equal(got, wantLines(0, 5)) {
		t.Errorf("got %q", got)
	}
}

// The agent restarts with records still buffered: the new forwarder sends
// them first, and none twice.
func TestForwardBufferSurvivesRestart(t *testing.T) {
	srv := newServer(t, true)
	dir := t.TempDir()
	f := startForwarder(t, srv.Addr, dir, 1<<20, time.Second)
	submitAll(t, f.Forwarder, 0, 300, 30)
	f.stop()

	srv.Start()
	f = startForwarder(t, srv.Addr, dir, 1<<20, time.Second)
	submitAll(t, f.Forwarder, 300, 10, 10)
	waitFor(t, "310 records", func() bool { return srv.Count() == 310 })
	time.Sleep(50 * time.Millisecond)
	if got := serverMessages(srv); !slices.Equal(got, wantLines(0, 310)) {
		t.Errorf("got %d, first out of place %s", len(got), firstDiff(got, wantLines(0, 310)))
	}
}

// Past the bound the oldest records are dropped and counted; the rest
// arrive in order.
func TestForwardBufferBound(t *testing.T) {
	srv := newServer(t, true)
	f := startForwarder(t, srv.Addr, t.TempDir(), 256<<10, time.Second)
	submitAll(t, f.Forwarder, 0, 10000, 100)
	dropped := testutil.ToFloat64(f.metrics.Dropped.WithLabelValues(DropBufferFull))
	buffered := f.Status().BufferedRecords
	if dropped == 0 || int(dropped)+int(buffered) != 10000 {
		t.Fatalf("dropped %v + buffered %d != 10000", dropped, buffered)
	}
	srv.Start()
	waitFor(t, "the buffered records", func() bool { return srv.Count() == int(buffered) })
	if got := serverMessages(srv); !slices.Equal(got, wantLines(int(dropped), int(buffered))) {
		t.Errorf("first out of place %s", firstDiff(got, wantLines(int(dropped), int(buffered))))
	}
}

func TestMetricsExposition(t *testing.T) {
	srv := newServer(t, true)
	f := startForwarder(t, srv.Addr, t.TempDir(), 1<<20, time.Second)
	f.metrics.Read.WithLabelValues(SourceJournal).Add(3)
	submitAll(t, f.Forwarder, 0, 3, 3)
	names := []string{"kubeup_log_entries_read_total", "kubeup_log_entries_sent_total", "kubeup_log_entries_buffered",
		"kubeup_log_buffer_bytes", "kubeup_log_entries_dropped_total", "kubeup_log_forward_up"}
	_, bytes := f.Status().BufferedRecords, f.Status().BufferedBytes
	want := fmt.Sprintf(`
# HELP kubeup_log_buffer_bytes Bytes the on-disk log buffer's segment files take.
# TYPE kubeup_log_buffer_bytes gauge
kubeup_log_buffer_bytes %d
# HELP kubeup_log_entries_buffered Log records in the on-disk buffer, waiting for the aggregator.
# TYPE kubeup_log_entries_buffered gauge
kubeup_log_entries_buffered 3
# HELP kubeup_log_entries_dropped_total Log records lost, by reason: buffer_full (the on-disk buffer reached its bound and its oldest segment was deleted), corrupt (an unreadable buffer frame), too_large.
# TYPE kubeup_log_entries_dropped_total counter
kubeup_log_entries_dropped_total{reason="buffer_full"} 0
kubeup_log_entries_dropped_total{reason="corrupt"} 0
kubeup_log_entries_dropped_total{reason="too_large"} 0
# HELP kubeup_log_entries_read_total Log records read, by source (journal, pod, audit).
# TYPE kubeup_log_entries_read_total counter
kubeup_log_entries_read_total{source="audit"} 0
kubeup_log_entries_read_total{source="journal"} 3
kubeup_log_entries_read_total{source="pod"} 0
# HELP kubeup_log_entries_sent_total Log records the aggregator acknowledged.
# TYPE kubeup_log_entries_sent_total counter
kubeup_log_entries_sent_total 0
# HELP kubeup_log_forward_up 1 while the log aggregator accepts and acknowledges records.
# TYPE kubeup_log_forward_up gauge
kubeup_log_forward_up 0
`, bytes)
	if err := testutil.CollectAndCompare(f.metrics, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	srv.Start()
	waitFor(t, "up", func() bool { return testutil.ToFloat64(f.metrics.Up) == 1 && testutil.ToFloat64(f.metrics.Sent) == 3 })
}
