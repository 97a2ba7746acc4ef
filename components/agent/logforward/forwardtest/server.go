// Package forwardtest is a minimal fluentd forward-protocol server for
// tests, in the spirit of net/http/httptest: it accepts Message-mode
// events ([tag, time, record, option]), with the time an integer or an
// EventTime, acks each one carrying a "chunk" option, and keeps what it
// received. It can be stopped and started again on the same address (an
// aggregator outage) and told to stop acking (a wedged pipeline).
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
}

// Server is a forward-protocol server on 127.0.0.1.
type Server struct {
	Addr string

	// NoAck, when set, makes the server read events without acking them.
	NoAck atomic.Bool
	// KeepRecords, when false, counts events without keeping them
	// (benchmarks).
	KeepRecords bool

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	events []Event
	count  int
	wg     sync.WaitGroup
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

// Events returns a copy of what was received.
func (s *Server) Events() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Event(nil), s.events...)
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
		ev, chunk, err := readEvent(r)
		if err != nil {
			return
		}
		if s.NoAck.Load() {
			continue // and never record it: the client will resend
		}
		s.mu.Lock()
		s.count++
		if s.KeepRecords {
			s.events = append(s.events, ev)
		}
		s.mu.Unlock()
		if chunk == "" {
			continue
		}
		if err := w.WriteMapHeader(1); err != nil {
			return
		}
		w.WriteString("ack")
		w.WriteString(chunk)
		if err := w.Flush(); err != nil {
			return
		}
	}
}

// readEvent reads one Message-mode event and its chunk option.
func readEvent(r *msgp.Reader) (Event, string, error) {
	n, err := r.ReadArrayHeader()
	if err != nil {
		return Event{}, "", err
	}
	if n < 3 || n > 4 {
		return Event{}, "", fmt.Errorf("forward: array of %d, only Message mode is supported", n)
	}
	var ev Event
	if ev.Tag, err = r.ReadString(); err != nil {
		return Event{}, "", err
	}
	typ, err := r.NextType()
	if err != nil {
		return Event{}, "", err
	}
	if typ == msgp.ExtensionType {
		var et eventTime
		if err := r.ReadExtension(&et); err != nil {
			return Event{}, "", err
		}
		ev.Time = et.t
	} else {
		sec, err := r.ReadInt64()
		if err != nil {
			return Event{}, "", err
		}
		ev.Time = time.Unix(sec, 0)
	}
	rec, err := r.ReadIntf()
	if err != nil {
		return Event{}, "", err
	}
	m, ok := rec.(map[string]any)
	if !ok {
		return Event{}, "", errors.New("forward: record is not a map")
	}
	ev.Record = m
	var chunk string
	if n == 4 {
		opt, err := r.ReadIntf()
		if err != nil {
			return Event{}, "", err
		}
		if om, ok := opt.(map[string]any); ok {
			chunk, _ = om["chunk"].(string)
		}
	}
	return ev, chunk, nil
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
