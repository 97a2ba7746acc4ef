package logforward

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/daemons/agent/logforward/forwardtest"
)

// benchRecords are journal records of a typical size (a 120-byte message).
func benchRecords(n int) ([]Record, int) {
	msg := strings.Repeat("x", 100)
	out := make([]Record, n)
	size := 0
	for i := range out {
		out[i] = Record{Tag: JournalTag, Time: time.Unix(1767225600, int64(i)), Body: EncodeJournal(nil,
			Origin{Cluster: "demo", Machine: "node-0", Role: "node"},
			JournalFields{Message: fmt.Sprintf("line %08d %s", i, msg), Unit: "kubelet.service", Identifier: "kubelet", Priority: 6, PID: 1234})}
		size += len(out[i].Body)
	}
	return out, size / n
}

// BenchmarkForward measures forwarding throughput through the Forwarder
// (fluent-logger-golang, one ack per record) to a forward server on
// loopback, in batches of 512 as the sources submit them. One op is one
// record; -benchtime sets how many.
func BenchmarkForward(b *testing.B) {
	srv, err := forwardtest.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	srv.KeepRecords = false
	defer srv.Stop()
	benchForward(b, srv.Addr, func() int { return srv.Count() })
}

// BenchmarkForwardLatency is BenchmarkForward against an aggregator 20 ms
// away: the server delays each ack by 20 ms, the round trip across
// kube-proxy to the aggregator's VM and its fsynced queue.
func BenchmarkForwardLatency(b *testing.B) {
	srv, err := forwardtest.NewServer()
	if err != nil {
		b.Fatal(err)
	}
	srv.KeepRecords = false
	srv.SetAckDelay(20 * time.Millisecond)
	defer srv.Stop()
	benchForward(b, srv.Addr, func() int { return srv.Count() })
}

// BenchmarkForwardBuffered measures the outage path: records appended to
// the disk buffer (one fsync per 512-record batch).
func BenchmarkForwardBuffered(b *testing.B) {
	srv, err := forwardtest.NewStoppedServer()
	if err != nil {
		b.Fatal(err)
	}
	benchForward(b, srv.Addr, nil)
}

func benchForward(b *testing.B, addr string, received func() int) {
	dial, err := FluentDialer(addr)
	if err != nil {
		b.Fatal(err)
	}
	f := NewForwarder(ForwarderConfig{BufferDir: b.TempDir(), BufferMaxBytes: 1 << 30, Dial: dial})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	recs, size := benchRecords(512)
	b.SetBytes(int64(size))
	b.ResetTimer()
	start := time.Now()
	for sent := 0; sent < b.N; sent += len(recs) {
		if err := f.Submit(ctx, recs[:min(len(recs), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if received != nil && received() < b.N {
		b.Fatalf("server has %d of %d records", received(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}

// BenchmarkForwardDrain measures how fast a backlog leaves the disk buffer
// once the aggregator is back: b.N records are buffered during an outage,
// then the server starts and the clock runs until it has them all.
func BenchmarkForwardDrain(b *testing.B) { benchDrain(b, 0) }

// BenchmarkForwardDrainLatency is BenchmarkForwardDrain with acks 20 ms
// away.
func BenchmarkForwardDrainLatency(b *testing.B) { benchDrain(b, 20*time.Millisecond) }

func benchDrain(b *testing.B, ackDelay time.Duration) {
	srv, err := forwardtest.NewStoppedServer()
	if err != nil {
		b.Fatal(err)
	}
	srv.KeepRecords = false
	srv.SetAckDelay(ackDelay)
	defer srv.Stop()
	dial, err := FluentDialer(srv.Addr)
	if err != nil {
		b.Fatal(err)
	}
	f := NewForwarder(ForwarderConfig{BufferDir: b.TempDir(), BufferMaxBytes: 1 << 30, Dial: dial})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	defer func() { cancel(); <-done }()
	recs, size := benchRecords(512)
	for sent := 0; sent < b.N; sent += len(recs) {
		if err := f.Submit(ctx, recs[:min(len(recs), b.N-sent)]); err != nil {
			b.Fatal(err)
		}
	}
	if st := f.Status(); st.BufferedRecords != int64(b.N) {
		b.Fatalf("buffered %d of %d records", st.BufferedRecords, b.N)
	}
	b.SetBytes(int64(size))
	if err := srv.Start(); err != nil {
		b.Fatal(err)
	}
	// The clock starts when the forwarder reconnects (after its back-off,
	// which is not what is measured).
	for !f.Status().Up {
		time.Sleep(100 * time.Microsecond)
	}
	b.ResetTimer()
	start := time.Now()
	for srv.Count() < b.N {
		time.Sleep(100 * time.Microsecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
