package otelbench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"kubeup.dev/kubeup/components/agent/logforward"
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

// BenchmarkForwardToReceiver: forwarding throughput into the real
// receiver (one ack per record; submissions of 512 records).
func BenchmarkForwardToReceiver(b *testing.B) {
	r := startReceiver(b, false)
	fwd := startForwarder(b, r.addr)
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
	if st := fwd.Status(); st.BufferedRecords != 0 {
		b.Fatalf("forwarder buffered records: %+v", st)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
