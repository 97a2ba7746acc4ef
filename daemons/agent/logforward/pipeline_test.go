package logforward

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestPipelineNoLossNoDuplicates mirrors the end-to-end loss test with a
// fake journalctl: the aggregator is stopped, 10,000 lines are written
// (systemd-cat -t kubeup), the agent restarts halfway, the aggregator is
// started, and every line is stored exactly once, in order.
func TestPipelineNoLossNoDuplicates(t *testing.T) {
	srv := newServer(t, true)
	state, bufDir := t.TempDir(), t.TempDir()
	jc := &fakeJournalctl{}

	type agent struct {
		cancel context.CancelFunc
		done   chan struct{}
		fwd    *Forwarder
	}
	start := func() *agent {
		dial, _ := fluentDialer(srv.Addr, time.Second, time.Second, time.Second)
		fwd := NewForwarder(ForwarderConfig{BufferDir: bufDir, BufferMaxBytes: 256 << 20, Dial: dial})
		j := NewJournal(JournalConfig{Units: []string{"kubelet.service"}, Identifiers: []string{"kubeup"},
			Origin: Origin{Machine: "node-0"}, StateDir: state, Run: jc.run, Submit: fwd.Submit})
		ctx, cancel := context.WithCancel(context.Background())
		a := &agent{cancel: cancel, done: make(chan struct{}), fwd: fwd}
		go func() {
			defer close(a.done)
			go fwd.Run(ctx)
			j.Run(ctx)
		}()
		return a
	}
	stop := func(a *agent) {
		a.cancel()
		<-a.done
		time.Sleep(20 * time.Millisecond) // the forwarder's deferred cleanup
	}

	jc.add(5000, "kubeup test line %05d")
	a := start()
	waitFor(t, "5000 lines buffered", func() bool { return a.fwd.Status().BufferedRecords == 5000 })
	stop(a) // the agent restarts during the outage

	jc.add(5000, "kubeup test line %05d")
	a = start()
	defer stop(a)
	waitFor(t, "10000 lines buffered", func() bool { return a.fwd.Status().BufferedRecords == 10000 })

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "10000 lines stored", func() bool { return srv.Count() >= 10000 })
	time.Sleep(100 * time.Millisecond)
	seen := map[string]int{}
	for i, e := range srv.Events() {
		m := e.Record["message"].(string)
		seen[m]++
		if want := fmt.Sprintf("kubeup test line %05d", i); m != want {
			t.Fatalf("record %d is %q, want %q", i, m, want)
		}
	}
	for i := range 10000 {
		if n := seen[fmt.Sprintf("kubeup test line %05d", i)]; n != 1 {
			t.Errorf("line %d stored %d times", i, n)
		}
	}
}
