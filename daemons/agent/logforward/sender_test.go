package logforward

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"
)

func TestBatchLen(t *testing.T) {
	bigBody := func(n int) Record { return Record{Tag: JournalTag, Body: make([]byte, n)} }
	for _, tc := range []struct {
		name string
		recs []Record
		want int
	}{
		{"empty", nil, 0},
		{"one", recs(0, 1), 1},
		{"to the tag change", runs(0, run{JournalTag, 3}, run{PodTag, 2}), 3},
		{"record bound", recs(0, 600), batchMaxRecords},
		{"byte bound", []Record{bigBody(300 << 10), bigBody(200 << 10), bigBody(20 << 10)}, 2},
		{"a record past the bound goes alone", []Record{bigBody(600 << 10), bigBody(1)}, 1},
	} {
		if got := batchLen(tc.recs); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
}

// The message is [tag, [[EventTime, record], ...], {"chunk": id}], each
// record's bytes as they are, and within the size the batcher counted.
func TestForwardMessageEncoding(t *testing.T) {
	rs := recs(0, 3)
	rs[1].Time = time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	m := forwardMessage{Tag: JournalTag, Entries: rs, Chunk: "abc"}
	b, err := m.MarshalMsg(nil)
	if err != nil {
		t.Fatal(err)
	}
	var size batchSizer
	for _, r := range rs {
		size.fit(r)
	}
	if len(b) > size.bytes {
		t.Errorf("encoded %d bytes, counted %d", len(b), size.bytes)
	}
	v, rest, err := msgp.ReadIntfBytes(b)
	if err != nil || len(rest) != 0 {
		t.Fatalf("decode: %v, %d bytes left", err, len(rest))
	}
	arr := v.([]any)
	if len(arr) != 3 || arr[0] != JournalTag {
		t.Fatalf("message %v", arr)
	}
	if opt := arr[2].(map[string]any); len(opt) != 1 || opt["chunk"] != "abc" {
		t.Errorf("option %v", opt)
	}
	entries := arr[1].([]any)
	if len(entries) != 3 {
		t.Fatalf("%d entries", len(entries))
	}
	for i, e := range entries {
		pair := e.([]any)
		et, ok := pair[0].(*fluent.EventTime)
		if !ok || !time.Time(*et).Equal(rs[i].Time) {
			t.Errorf("entry %d time %#v, want %v", i, pair[0], rs[i].Time)
		}
		if f := pair[1].(map[string]any); f["message"] != msgOf(t, rs[i]) {
			t.Errorf("entry %d record %v", i, f)
		}
	}
	if _, err := (&forwardMessage{Tag: PodTag, Entries: rs}).MarshalMsg(nil); err == nil {
		t.Error("records of another tag encoded")
	}
}

// fakeAggregator accepts one connection, reads what comes and answers
// each read with answer (nil: no answer).
func fakeAggregator(t *testing.T, answer []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64<<10)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
			if answer != nil {
				c.Write(answer)
			}
		}
	}()
	return ln.Addr().String()
}

func dialFake(t *testing.T, addr string, ackTimeout time.Duration) *forwardConn {
	t.Helper()
	dial, err := fluentDialer(addr, time.Second, time.Second, ackTimeout)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s.(*forwardConn)
}

func TestSendAckMismatch(t *testing.T) {
	ack, _ := fluent.AckResp{Ack: "not-this-chunk"}.MarshalMsg(nil)
	c := dialFake(t, fakeAggregator(t, ack), time.Second)
	err := c.Send(context.Background(), recs(0, 2))
	if err == nil || !strings.Contains(err.Error(), `ack for chunk "not-this-chunk"`) {
		t.Errorf("err %v", err)
	}
}

// The agent stopping cuts a long wait for an ack down to the grace period.
func TestSendShutdownGrace(t *testing.T) {
	c := dialFake(t, fakeAggregator(t, nil), time.Minute)
	c.grace = 50 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	err := c.Send(ctx, recs(0, 2))
	if err == nil || time.Since(start) > 10*time.Second {
		t.Errorf("err %v after %v", err, time.Since(start))
	}
}

func TestFluentDialerAddress(t *testing.T) {
	for _, addr := range []string{"10.96.0.11", "host:0", "host:http", "host:70000"} {
		if _, err := FluentDialer(addr); err == nil {
			t.Errorf("%s accepted", addr)
		}
	}
}
