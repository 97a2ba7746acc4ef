package forwardtest

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Event is one received record.
type Event struct {
	Tag    string
	Time   time.Time
	Record map[string]any
	// Message is the index in Messages of the message it came in.
	Message int
}

// Modes of Message.
const (
	MessageMode = "message"
	ForwardMode = "forward"
)

// Message is one received forward-protocol message.
type Message struct {
	Mode   string // MessageMode or ForwardMode
	Tag    string
	Events int
	// Bytes is the size of the events' encoded records.
	Bytes int
	Chunk string
}

// Server is a forward-protocol server on 127.0.0.1.
type Server struct {
	Addr string

	// NoAck, when set, makes the server read messages without acking them.
	NoAck atomic.Bool
	// KeepRecords, when false, counts events without keeping them
	// (benchmarks).
	KeepRecords bool

	ackDelay atomic.Int64

	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]bool
	events   []Event
	messages []Message
	count    int
	drop     func(Message) bool
	wg       sync.WaitGroup
}

// NewServer starts a server on a free loopback port.
func NewServer() (*Server, error) {
	s := &Server{KeepRecords: true}
	if err := s.listen("127.0.0.1:0"); err != nil {
		return nil, err
	}
	return s, nil
}

// NewStoppedServer reserves a loopback address without serving on it:
// connections are refused until Start.
func NewStoppedServer() (*Server, error) {
	s, err := NewServer()
	if err != nil {
		return nil, err
	}
	s.Stop()
	return s, nil
}

// SetAckDelay makes the server wait d after reading a message before it
// acks it: a round trip to an aggregator across the network that acks
// once the records are in its fsynced queue.
func (s *Server) SetAckDelay(d time.Duration) { s.ackDelay.Store(int64(d)) }

// SetDrop installs a function asked about every message before it is kept:
// when it returns true the message is neither kept nor acked, as with
// NoAck (the client times out and resends it).
func (s *Server) SetDrop(drop func(Message) bool) {
	s.mu.Lock()
	s.drop = drop
	s.mu.Unlock()
}

func (s *Server) listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.ln, s.Addr = ln, ln.Addr().String()
	if s.conns == nil {
		s.conns = map[net.Conn]bool{}
	}
	s.mu.Unlock()
	s.wg.Add(1)
	go s.accept(ln)
	return nil
}

// Start serves again on the same address.
func (s *Server) Start() error {
	var err error
	for range 50 { // the port may linger briefly after Stop
		if err = s.listen(s.Addr); err == nil {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("restart forward server on %s: %w", s.Addr, err)
}

// Stop closes the listener and every connection.
func (s *Server) Stop() {
	s.mu.Lock()
	if s.ln != nil {
		s.ln.Close()
		s.ln = nil
	}
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// Events returns a copy of the events received.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
}

// Messages returns a copy of the messages received (kept, like events,
// only with KeepRecords).
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.messages...)
}

// Count is the number of events received.
func (s *Server) Count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count
}

func (s *Server) accept(ln net.Listener) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.ln != ln {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Server) serve(c net.Conn) {
	r := msgp.NewReader(c)
	w := msgp.NewWriter(c)
	for {
		msg, evs, err := readMessage(r)
		if err != nil {
			return
		}
		s.mu.Lock()
		drop := s.drop
		s.mu.Unlock()
		if s.NoAck.Load() || drop != nil && drop(msg) {
			continue // and never keep it: the client will resend
		}
		if d := time.Duration(s.ackDelay.Load()); d > 0 && msg.Chunk != "" {
			time.Sleep(d)
		}
		s.mu.Lock()
		s.count += len(evs)
		if s.KeepRecords {
			for i := range evs {
				evs[i].Message = len(s.messages)
			}
			s.messages = append(s.messages, msg)
			s.events = append(s.events, evs...)
		}
		s.mu.Unlock()
		if msg.Chunk == "" {
			continue
		}
		if err := w.WriteMapHeader(1); err != nil {
			return
		}
		w.WriteString("ack")
		w.WriteString(msg.Chunk)
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// readMessage reads one Message- or Forward-mode message; as the protocol
// says, the mode is told by the type of the second element.
func readMessage(r *msgp.Reader) (Message, []Event, error) {
	n, err := r.ReadArrayHeader()
	if err != nil {
		return Message{}, nil, err
	}
	var msg Message
	if msg.Tag, err = r.ReadString(); err != nil {
		return Message{}, nil, err
	}
	typ, err := r.NextType()
	if err != nil {
		return Message{}, nil, err
	}
	var evs []Event
	switch typ {
	case msgp.ExtensionType, msgp.IntType, msgp.UintType:
		if n < 3 || n > 4 {
			return Message{}, nil, fmt.Errorf("forward: Message mode array of %d", n)
		}
		msg.Mode = MessageMode
		ev, size, err := readEntry(r, msg.Tag)
		if err != nil {
			return Message{}, nil, err
		}
		evs, msg.Bytes = []Event{ev}, size
		n -= 3
	case msgp.ArrayType:
		if n < 2 || n > 3 {
			return Message{}, nil, fmt.Errorf("forward: Forward mode array of %d", n)
		}
		msg.Mode = ForwardMode
		entries, err := r.ReadArrayHeader()
		if err != nil {
			return Message{}, nil, err
		}
		for range entries {
			if k, err := r.ReadArrayHeader(); err != nil || k != 2 {
				return Message{}, nil, errors.Join(errors.New("forward: entry is not [time, record]"), err)
			}
			ev, size, err := readEntry(r, msg.Tag)
			if err != nil {
				return Message{}, nil, err
			}
			evs = append(evs, ev)
			msg.Bytes += size
		}
		n -= 2
	default:
		return Message{}, nil, fmt.Errorf("forward: second element of type %v: only Message and Forward modes are supported", typ)
	}
	msg.Events = len(evs)
	if n == 1 {
		opt, err := r.ReadIntf()
		if err != nil {
			return Message{}, nil, err
		}
		if om, ok := opt.(map[string]any); ok {
			msg.Chunk, _ = om["chunk"].(string)
		}
	}
	return msg, evs, nil
}

// readEntry reads an event's time and record, returning the record's
// encoded size.
func readEntry(r *msgp.Reader, tag string) (Event, int, error) {
	ev := Event{Tag: tag}
	typ, err := r.NextType()
	if err != nil {
		return Event{}, 0, err
	}
	if typ == msgp.ExtensionType {
		var et eventTime
		if err := r.ReadExtension(&et); err != nil {
			return Event{}, 0, err
		}
		ev.Time = et.t
	} else {
		sec, err := r.ReadInt64()
		if err != nil {
			return Event{}, 0, err
		}
		ev.Time = time.Unix(sec, 0)
	}
	var raw msgp.Raw
	if err := raw.DecodeMsg(r); err != nil {
		return Event{}, 0, err
	}
	rec, _, err := msgp.ReadIntfBytes(raw)
	if err != nil {
		return Event{}, 0, err
	}
	m, ok := rec.(map[string]any)
	if !ok {
		return Event{}, 0, errors.New("forward: record is not a map")
	}
	ev.Record = m
	return ev, len(raw), nil
}

// eventTime is the forward protocol's EventTime: extension type 0,
// seconds and nanoseconds as two big-endian uint32s.
type eventTime struct{ t time.Time }

func (*eventTime) ExtensionType() int8 { return 0 }
func (*eventTime) Len() int            { return 8 }
func (e *eventTime) MarshalBinaryTo(b []byte) error {
	putU32(b, uint32(e.t.Unix()))
	putU32(b[4:], uint32(e.t.Nanosecond()))
	return nil
}
func (e *eventTime) UnmarshalBinary(b []byte) error {
	if len(b) != 8 {
		return io.ErrUnexpectedEOF
	}
	e.t = time.Unix(int64(u32(b)), int64(u32(b[4:])))
	return nil
}

func u32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}
func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}
