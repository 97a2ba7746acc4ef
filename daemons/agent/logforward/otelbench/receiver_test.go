package otelbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kubeup.dev/kubeup/daemons/agent/logforward"
)

var receiverBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "otelbench")
	if err != nil {
		panic(err)
	}
	receiverBin = filepath.Join(dir, "receiver")
	if out, err := exec.Command("go", "build", "-o", receiverBin, "./receiver").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build the receiver: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type batch struct {
	Count   int `json:"count"`
	Records []struct {
		Time       time.Time      `json:"time"`
		Body       string         `json:"body"`
		Attributes map[string]any `json:"attributes"`
	} `json:"records"`
}

// receiver is the fluentforward receiver in a child process.
type receiver struct {
	addr string
	mu   sync.Mutex
	n    int
	got  []batch
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

func startReceiver(t testing.TB, records bool) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{addr: ln.Addr().String()}
	ln.Close()
	cmd := exec.Command(receiverBin, "-addr="+r.addr, fmt.Sprintf("-records=%t", records))
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 64<<20)
		for sc.Scan() {
			var b batch
			if json.Unmarshal(sc.Bytes(), &b) == nil {
				r.mu.Lock()
				r.n += b.Count
				if records {
					r.got = append(r.got, b)
				}
				r.mu.Unlock()
			}
		}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", r.addr)
		if err == nil {
			c.Close()
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("receiver not listening: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startForwarder(t testing.TB, addr string) *logforward.Forwarder {
	t.Helper()
	dial, err := logforward.FluentDialer(addr)
	if err != nil {
		t.Fatal(err)
	}
	fwd := logforward.NewForwarder(logforward.ForwarderConfig{BufferDir: t.TempDir(), BufferMaxBytes: 1 << 30, Dial: dial})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { fwd.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return fwd
}

// TestReceiverAcceptsRecords: the receiver acks the agent's records (the
// Forwarder counts them as sent, nothing is buffered) and stores them with
// the event time to the nanosecond, "message" as the body and the other
// fields as attributes.
func TestReceiverAcceptsRecords(t *testing.T) {
	r := startReceiver(t, true)
	fwd := startForwarder(t, r.addr)
	at := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	origin := logforward.Origin{Cluster: "demo", Machine: "node-0", Role: "node"}
	recs := []logforward.Record{
		{Tag: logforward.JournalTag, Time: at, Body: logforward.EncodeJournal(nil, origin,
			logforward.JournalFields{Message: "kubeup test line 1", Unit: "kubeup", Identifier: "kubeup", Priority: 5, PID: 42})},
		{Tag: logforward.PodTag, Time: at.Add(time.Millisecond), Body: logforward.EncodePod(nil, origin,
			logforward.PodFields{Message: "pod line", Namespace: "kube-system", Pod: "coredns-1", Container: "coredns", Stream: "stdout"})},
	}
	if err := fwd.Submit(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if st := fwd.Status(); !st.Up || st.BufferedRecords != 0 {
		t.Fatalf("forwarder %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.count() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var all []string
	for _, b := range r.got {
		for _, rec := range b.Records {
			all = append(all, fmt.Sprintf("%s|%s|%v|%v|%v|%v|%v|%v", rec.Time.UTC().Format(time.RFC3339Nano), rec.Body,
				rec.Attributes["fluent.tag"], rec.Attributes["unit"], rec.Attributes["priority"], rec.Attributes["level"],
				rec.Attributes["namespace"], rec.Attributes["source"]))
		}
	}
	want := []string{
		"2026-01-02T03:04:05.123456789Z|kubeup test line 1|kubeup.journal|kubeup|5|notice|<nil>|journal",
		"2026-01-02T03:04:05.124456789Z|pod line|kubeup.pods|<nil>|<nil>|<nil>|kube-system|pod",
	}
	if strings.Join(all, "\n") != strings.Join(want, "\n") {
		t.Errorf("receiver got\n%s\nwant\n%s", strings.Join(all, "\n"), strings.Join(want, "\n"))
	}
}

// TestReceiverAcceptsBatches: the receiver takes the Forwarder's
// Forward-mode messages (EventTime entries, the chunk option) and acks
// each once: a submission of three runs of two tags arrives as one
// consumed batch per message, every record in order with its tag and
// nanosecond time, and nothing is buffered.
func TestReceiverAcceptsBatches(t *testing.T) {
	r := startReceiver(t, true)
	fwd := startForwarder(t, r.addr)
	origin := logforward.Origin{Cluster: "demo", Machine: "node-0", Role: "node"}
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	var recs []logforward.Record
	for i := range 1500 {
		ts := at.Add(time.Duration(i)*time.Millisecond + time.Duration(i))
		if i >= 600 && i < 900 {
			recs = append(recs, logforward.Record{Tag: logforward.PodTag, Time: ts, Body: logforward.EncodePod(nil, origin,
				logforward.PodFields{Message: fmt.Sprintf("line %05d", i), Namespace: "ns", Pod: "p", Container: "c", Stream: "stdout"})})
			continue
		}
		recs = append(recs, logforward.Record{Tag: logforward.JournalTag, Time: ts, Body: logforward.EncodeJournal(nil, origin,
			logforward.JournalFields{Message: fmt.Sprintf("line %05d", i), Unit: "kubeup", Priority: 6})})
	}
	if err := fwd.Submit(context.Background(), recs); err != nil {
		t.Fatal(err)
	}
	if st := fwd.Status(); !st.Up || st.BufferedRecords != 0 || st.LastError != "" {
		t.Fatalf("forwarder %+v", st)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r.count() < len(recs) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var counts []int
	i := 0
	for _, b := range r.got {
		counts = append(counts, b.Count)
		for _, rec := range b.Records {
			if i >= len(recs) {
				t.Fatalf("more than %d records", len(recs))
			}
			if want := fmt.Sprintf("line %05d", i); rec.Body != want || !rec.Time.Equal(recs[i].Time) ||
				rec.Attributes["fluent.tag"] != recs[i].Tag {
				t.Fatalf("record %d: %s %s %v, want %s %s %v", i, rec.Body, rec.Time, rec.Attributes["fluent.tag"], want, recs[i].Time, recs[i].Tag)
			}
			i++
		}
	}
	if i != len(recs) {
		t.Errorf("%d of %d records", i, len(recs))
	}
	if want := fmt.Sprint([]int{512, 88, 300, 512, 88}); fmt.Sprint(counts) != want {
		t.Errorf("consumed batches %v, want %s (one per message)", counts, want)
	}
}

// BenchmarkForwardToReceiver: forwarding throughput into the real
// receiver (Forward-mode messages of up to 512 records, one ack each;
// submissions of 512 records).
func BenchmarkForwardToReceiver(b *testing.B) {
	r := startReceiver(b, false)
	benchForward(b, r, r.addr)
}

// BenchmarkForwardToReceiverLatency is BenchmarkForwardToReceiver with
// the receiver's acks 20 ms away (a proxy holds back what the receiver
// sends), the round trip across the cluster network to an aggregator
// with an fsynced queue.
func BenchmarkForwardToReceiverLatency(b *testing.B) {
	r := startReceiver(b, false)
	benchForward(b, r, delayProxy(b, r.addr, 20*time.Millisecond))
}

func benchForward(b *testing.B, r *receiver, addr string) {
	fwd := startForwarder(b, addr)
	origin := logforward.Origin{Cluster: "demo", Machine: "node-0", Role: "node"}
	recs := make([]logforward.Record, 512)
	size := 0
	for i := range recs {
		recs[i] = logforward.Record{Tag: logforward.JournalTag, Time: time.Unix(1767225600, int64(i)),
			Body: logforward.EncodeJournal(nil, origin, logforward.JournalFields{
				Message: fmt.Sprintf("line %08d %s", i, strings.Repeat("x", 100)), Unit: "kubelet.service",
				Identifier: "kubelet", Priority: 6, PID: 1234})}
		size += len(recs[i].Body)
	}
	b.SetBytes(int64(size / len(recs)))
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; sent += len(recs) {
		if err := fwd.Submit(context.Background(), recs[:min(len(recs), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	elapsed := time.Since(start)
	if st := fwd.Status(); st.BufferedRecords != 0 {
		b.Fatalf("forwarder buffered records: %+v", st)
	}
	deadline := time.Now().Add(10 * time.Second)
	for r.count() < b.N && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := r.count(); n != b.N {
		b.Fatalf("receiver consumed %d of %d records", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "records/s")
}

// delayProxy listens on loopback and forwards to addr, passing what the
// client sends at once and what the server sends delay later.
func delayProxy(t testing.TB, addr string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", addr)
			if err != nil {
				c.Close()
				continue
			}
			go func() { io.Copy(s, c); s.Close() }()
			go func() {
				defer c.Close()
				buf := make([]byte, 64<<10)
				for {
					n, err := s.Read(buf)
					if n > 0 {
						time.Sleep(delay)
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}
