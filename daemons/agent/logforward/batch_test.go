package logforward

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"kubeup.dev/kubeup/daemons/agent/logforward/forwardtest"
)

func podRec(i int) Record {
	return Record{Tag: PodTag, Time: time.Unix(1767225600, int64(i)), Body: EncodePod(nil, Origin{Machine: "m"},
		PodFields{Message: fmt.Sprintf("line %05d", i), Namespace: "ns", Pod: "p", Container: "c", Stream: "stdout"})}
}

type run struct {
	tag string
	n   int
}

// runs returns records numbered from, in runs of one tag each.
func runs(from int, rs ...run) []Record {
	var out []Record
	for _, r := range rs {
		for range r.n {
			if r.tag == PodTag {
				out = append(out, podRec(from))
			} else {
				out = append(out, rec(from))
			}
			from++
		}
	}
	return out
}

// summary is "mode tag events" per message.
func summary(msgs []forwardtest.Message) []string {
	var out []string
	for _, m := range msgs {
		out = append(out, fmt.Sprintf("%s %s %d", m.Mode, m.Tag, m.Events))
	}
	return out
}

// One submission goes out in Forward-mode messages, one per run of a tag
// and at most batchMaxRecords each, in order, every record with its own
// tag and nanosecond time.
func TestForwardBatchesByTag(t *testing.T) {
	srv := newServer(t, false)
	f := startForwarder(t, srv.Addr, t.TempDir(), 1<<20, time.Second)
	if err := f.Submit(context.Background(), runs(0, run{JournalTag, 600}, run{PodTag, 300}, run{JournalTag, 100})); err != nil {
		t.Fatal(err)
	}
	if err := f.Submit(context.Background(), runs(1000, run{PodTag, 5})); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"forward kubeup.journal 512", "forward kubeup.journal 88", "forward kubeup.pods 300",
		"forward kubeup.journal 100", "forward kubeup.pods 5",
	}
	if got := summary(srv.Messages()); !slices.Equal(got, want) {
		t.Errorf("messages %q, want %q", got, want)
	}
	if got := serverMessages(srv); !slices.Equal(got, wantLines(0, 1005)) {
		t.Errorf("first out of place %s", firstDiff(got, wantLines(0, 1005)))
	}
	msgs := srv.Messages()
	for i, e := range srv.Events() {
		wantTag := JournalTag
		if i >= 600 && i < 900 || i >= 1000 {
			wantTag = PodTag
		}
		if e.Tag != wantTag || msgs[e.Message].Tag != wantTag || !e.Time.Equal(time.Unix(1767225600, int64(i))) {
			t.Fatalf("event %d: tag %s (message's %s), time %v", i, e.Tag, msgs[e.Message].Tag, e.Time)
		}
	}
	if sent, batches := testutil.ToFloat64(f.metrics.Sent), testutil.ToFloat64(f.metrics.Batches); sent != 1005 || batches != 5 {
		t.Errorf("sent %v records in %v batches", sent, batches)
	}
}

// Messages stay within batchMaxBytes; a record larger than that goes
// alone.
func TestForwardBatchBytes(t *testing.T) {
	srv := newServer(t, false)
	f := startForwarder(t, srv.Addr, t.TempDir(), 16<<20, time.Second)
	big := func(i, size int) Record {
		return Record{Tag: JournalTag, Time: time.Unix(1767225600, int64(i)), Body: EncodeJournal(nil, Origin{Machine: "m"},
			JournalFields{Message: fmt.Sprintf("line %05d %s", i, strings.Repeat("x", size)), Unit: "kubeup", Priority: 6})}
	}
	var recs []Record
	for i := range 151 {
		size := 10 << 10
		if i == 70 {
			size = 600 << 10
		}
		recs = append(recs, big(i, size))
	}
	if err := f.Submit(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	perRec := entryOverhead + len(recs[0].Body)
	per := (batchMaxBytes - messageOverhead - len(JournalTag)) / perRec
	want := []int{per, 70 - per, 1, per, 80 - per}
	var got []int
	for _, m := range srv.Messages() {
		got = append(got, m.Events)
		if size := messageOverhead + len(m.Tag) + m.Events*entryOverhead + m.Bytes; m.Events > 1 && size > batchMaxBytes {
			t.Errorf("message of %d records and %d bytes, bound %d", m.Events, size, batchMaxBytes)
		}
	}
	if !slices.Equal(got, want) {
		t.Errorf("messages of %v records, want %v", got, want)
	}
	if n := srv.Count(); n != 151 {
		t.Errorf("%d records at the server", n)
	}
}

// A source that goes idle has what it read sent at once, as a batch of
// what there is: the journal's three lines arrive in one message while
// journalctl is still following.
func TestForwardIdleFlush(t *testing.T) {
	srv := newServer(t, false)
	f := startForwarder(t, srv.Addr, t.TempDir(), 1<<20, time.Second)
	jc := &fakeJournalctl{}
	jc.add(3, "kubeup test line %05d")
	j := NewJournal(JournalConfig{Identifiers: []string{"kubeup"}, StateDir: t.TempDir(), Run: jc.run, Submit: f.Submit})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- j.Run(ctx) }()
	stop := sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(stop)
	start := time.Now()
	waitFor(t, "3 records", func() bool { return srv.Count() == 3 })
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("3 lines took %v to arrive", d)
	}
	if got, want := summary(srv.Messages()), []string{"forward kubeup.journal 3"}; !slices.Equal(got, want) {
		t.Errorf("messages %q, want %q", got, want)
	}
	stop()
	if c := j.Cursor(); c != "c2" {
		t.Errorf("cursor %q", c)
	}
}

// A batch whose ack never comes, after others of the same submission were
// acked: it and the rest of the submission go to the buffer, in order, and
// are resent from there; each record is stored once.
func TestForwardBatchNoAck(t *testing.T) {
	srv := newServer(t, false)
	var seen atomic.Int32
	srv.SetDrop(func(forwardtest.Message) bool { return seen.Add(1) == 2 })
	f := startForwarder(t, srv.Addr, t.TempDir(), 1<<20, 100*time.Millisecond)
	if err := f.Submit(context.Background(), runs(0, run{JournalTag, 700}, run{PodTag, 500})); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.Up || st.BufferedRecords != 688 {
		t.Fatalf("after the lost ack: %+v", st)
	}
	if got := testutil.ToFloat64(f.metrics.Sent); got != 512 {
		t.Errorf("sent %v", got)
	}
	waitFor(t, "1200 records", func() bool { return srv.Count() == 1200 })
	waitFor(t, "buffer empty", func() bool { return f.Status().BufferedRecords == 0 })
	time.Sleep(50 * time.Millisecond)
	if got := serverMessages(srv); !slices.Equal(got, wantLines(0, 1200)) {
		t.Errorf("got %d records, first out of place %s", len(got), firstDiff(got, wantLines(0, 1200)))
	}
	want := []string{"forward kubeup.journal 512", "forward kubeup.journal 188", "forward kubeup.pods 500"}
	if got := summary(srv.Messages()); !slices.Equal(got, want) {
		t.Errorf("messages %q, want %q", got, want)
	}
	if sent, batches := testutil.ToFloat64(f.metrics.Sent), testutil.ToFloat64(f.metrics.Batches); sent != 1200 || batches != 3 {
		t.Errorf("sent %v records in %v batches", sent, batches)
	}
}

// The buffer is resent in batches of one tag each, as large as the bound
// and the buffer's segments allow.
func TestForwardDrainBatches(t *testing.T) {
	srv := newServer(t, true)
	f := startForwarder(t, srv.Addr, t.TempDir(), 64<<20, time.Second)
	submitAll(t, f.Forwarder, 0, 1500, 100)
	if err := f.Submit(context.Background(), runs(1500, run{PodTag, 20})); err != nil {
		t.Fatal(err)
	}
	if st := f.Status(); st.BufferedRecords != 1520 {
		t.Fatalf("status %+v", st)
	}
	srv.Start()
	waitFor(t, "1520 records", func() bool { return srv.Count() == 1520 })
	if got := serverMessages(srv); !slices.Equal(got, wantLines(0, 1520)) {
		t.Errorf("first out of place %s", firstDiff(got, wantLines(0, 1520)))
	}
	want := []string{"forward kubeup.journal 512", "forward kubeup.journal 512", "forward kubeup.journal 476", "forward kubeup.pods 20"}
	if got := summary(srv.Messages()); !slices.Equal(got, want) {
		t.Errorf("messages %q, want %q", got, want)
	}
}
