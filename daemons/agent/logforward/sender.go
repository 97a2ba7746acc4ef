package logforward

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"
)

// Forward-protocol client timeouts: connecting, writing a message, and
// waiting for its ack. The OpenTelemetry Collector's fluentforward
// receiver acks a chunk only once its pipeline took it, and gives up
// after 30 s to queue the message plus 30 s to wait for the pipeline,
// closing the connection (which the client sees at once); ackTimeout
// outlasts both, so a chunk the receiver may still ack (and store) is not
// sent again early. It only runs out against a peer that went silent (a
// dead VM, a black-holed network, a wedged receiver), where each attempt
// costs that long before records go to the buffer. When the agent stops,
// a wait for an ack is cut to shutdownGrace.
const (
	dialTimeout   = 5 * time.Second
	writeTimeout  = 10 * time.Second
	ackTimeout    = 65 * time.Second
	shutdownGrace = 5 * time.Second
)

// Batch bounds: the most records one message carries, and its most bytes
// (records and their framing; one record larger than that goes alone).
const (
	batchMaxRecords = 512
	batchMaxBytes   = 512 << 10
)

// Encoded size bounds: a message's array, tag header, entries' array and
// chunk option (a rand.Text id); an entry's array and EventTime.
const (
	chunkIDLen      = 26
	messageOverhead = 2*msgp.ArrayHeaderSize + msgp.StringPrefixSize +
		msgp.MapHeaderSize + 2*msgp.StringPrefixSize + len("chunk") + chunkIDLen
	entryOverhead = msgp.ArrayHeaderSize + msgp.ExtensionPrefixSize + 8
)

// batchSizer says where a batch ends: before a record of another tag than
// the first, or one that would take it past batchMaxRecords or
// batchMaxBytes. It takes the first record whatever its size.
type batchSizer struct {
	tag   string
	n     int
	bytes int
}

// fit reports whether r joins the batch, counting it if so.
func (s *batchSizer) fit(r Record) bool {
	size := entryOverhead + len(r.Body)
	if s.n == 0 {
		s.tag, s.bytes = r.Tag, messageOverhead+len(r.Tag)
	} else if r.Tag != s.tag || s.n >= batchMaxRecords || s.bytes+size > batchMaxBytes {
		return false
	}
	s.n++
	s.bytes += size
	return true
}

// batchLen is how many of recs, from the first, go in one message.
func batchLen(recs []Record) int {
	var s batchSizer
	n := 0
	for n < len(recs) && s.fit(recs[n]) {
		n++
	}
	return n
}

// forwardMessage is a Forward-mode message, [tag, [[time, record], ...],
// {"chunk": id}]: records of one tag, each time an EventTime (fluent's
// own Forward type carries whole seconds), acked once as a whole.
type forwardMessage struct {
	Tag     string
	Entries []Record
	Chunk   string
}

// MarshalMsg implements msgp.Marshaler.
func (m *forwardMessage) MarshalMsg(b []byte) ([]byte, error) {
	b = msgp.AppendArrayHeader(b, 3)
	b = msgp.AppendString(b, m.Tag)
	b = msgp.AppendArrayHeader(b, uint32(len(m.Entries)))
	var err error
	for _, r := range m.Entries {
		if r.Tag != m.Tag {
			return nil, fmt.Errorf("forward message: record of tag %q in a message of tag %q", r.Tag, m.Tag)
		}
		b = msgp.AppendArrayHeader(b, 2)
		t := fluent.EventTime(r.Time)
		if b, err = msgp.AppendExtension(b, &t); err != nil {
			return nil, fmt.Errorf("forward message: event time: %w", err)
		}
		if b, err = msgp.Raw(r.Body).MarshalMsg(b); err != nil {
			return nil, fmt.Errorf("forward message: record: %w", err)
		}
	}
	return msgp.AppendMapStrStr(b, map[string]string{"chunk": m.Chunk}), nil
}

// FluentDialer connects to a forward-protocol server at addr (host:port).
// Each Send is one Forward-mode message with a "chunk" option, and
// returns once the server acked that chunk (the aggregator acks once its
// pipeline took the records). Connections are single attempts: the
// Forwarder owns retries, back-off and buffering.
func FluentDialer(addr string) (Dialer, error) {
	return fluentDialer(addr, dialTimeout, writeTimeout, ackTimeout)
}

func fluentDialer(addr string, dialTimeout, writeTimeout, ackTimeout time.Duration) (Dialer, error) {
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("log aggregator address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("log aggregator address %q: bad port", addr)
	}
	return func() (Sender, error) {
		conn, err := net.DialTimeout("tcp", addr, dialTimeout)
		if err != nil {
			return nil, fmt.Errorf("connect to log aggregator %s: %w", addr, err)
		}
		return &forwardConn{addr: addr, conn: conn, acks: msgp.NewReader(conn),
			writeTimeout: writeTimeout, ackTimeout: ackTimeout, grace: shutdownGrace}, nil
	}, nil
}

// forwardConn is one connection to the aggregator. After an error it is
// unusable (an ack may still be in flight); the Forwarder closes it.
type forwardConn struct {
	addr         string
	conn         net.Conn
	acks         *msgp.Reader
	writeTimeout time.Duration
	ackTimeout   time.Duration
	grace        time.Duration // what is left of the ack wait once ctx ends
	buf          []byte        // encoding buffer, reused
}

func (c *forwardConn) Send(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	m := forwardMessage{Tag: recs[0].Tag, Entries: recs, Chunk: rand.Text()}
	b, err := m.MarshalMsg(c.buf[:0])
	if err != nil {
		return err
	}
	c.buf = b[:0]
	if cap(b) > 2*batchMaxBytes {
		c.buf = nil // a huge single record: do not keep its buffer
	}
	if err := c.conn.SetWriteDeadline(time.Now().Add(c.writeTimeout)); err != nil {
		return fmt.Errorf("send to log aggregator %s: %w", c.addr, err)
	}
	if _, err := c.conn.Write(b); err != nil {
		return fmt.Errorf("send to log aggregator %s: %w", c.addr, err)
	}
	ackBy := time.Now().Add(c.ackTimeout)
	if err := c.conn.SetReadDeadline(ackBy); err != nil {
		return fmt.Errorf("log aggregator %s: %w", c.addr, err)
	}
	stop := context.AfterFunc(ctx, func() {
		if grace := time.Now().Add(c.grace); grace.Before(ackBy) {
			c.conn.SetReadDeadline(grace)
		}
	})
	defer stop()
	var ack fluent.AckResp
	if err := ack.DecodeMsg(c.acks); err != nil {
		return fmt.Errorf("log aggregator %s: no ack for %d records: %w", c.addr, len(recs), err)
	}
	if ack.Ack != m.Chunk {
		return fmt.Errorf("log aggregator %s: ack for chunk %q, want %q", c.addr, ack.Ack, m.Chunk)
	}
	return nil
}

func (c *forwardConn) Close() error { return c.conn.Close() }
