package logforward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"
	"github.com/tinylib/msgp/msgp"
)

// Sender sends one record to the aggregator and returns once it is acked.
type Sender interface {
	Send(Record) error
	Close() error
}

// Dialer connects to the aggregator.
type Dialer func() (Sender, error)

// Forwarder timing: reconnection back-off, and how many buffered records
// one drain pass sends before it looks at new submissions again.
const (
	retryMin   = time.Second
	retryMax   = 30 * time.Second
	drainChunk = 64
)

// ForwarderConfig configures a Forwarder.
type ForwarderConfig struct {
	BufferDir      string
	BufferMaxBytes int64
	Dial           Dialer
	Metrics        *Metrics
	Log            *slog.Logger
	Now            func() time.Time // default time.Now
}

// ForwardStatus is the forwarder's state for /v1/status.
type ForwardStatus struct {
	// Up is true while the aggregator accepts and acks records.
	Up              bool      `json:"up"`
	BufferedRecords int64     `json:"bufferedRecords"`
	BufferedBytes   int64     `json:"bufferedBytes"`
	LastError       string    `json:"lastError,omitempty"`
	ErrorAt         time.Time `json:"errorAt,omitzero"`
}

// Forwarder is the task that owns the connection to the aggregator and the
// disk buffer. Sources hand it records with Submit; a single loop sends
// them, so records leave in the order they were submitted:
//
//   - buffer empty and aggregator up: each record is sent and acked;
//   - the aggregator unreachable, refusing or not acking (a send error):
//     this and later records are appended to the Buffer (fsynced), and the
//     loop reconnects with back-off (1 s doubling to 30 s);
//   - buffer not empty and aggregator back: the loop resends the buffer,
//     oldest first, in chunks; records submitted meanwhile are appended
//     behind it, so new records never overtake buffered ones. Once it is
//     empty, records go straight out again.
//
// A record whose send failed after it was written (the ack never came) is
// buffered and sent again: if the aggregator had in fact stored it, it is
// stored twice. That is the price of at-least-once delivery; a clean
// outage (connection refused, as with the aggregator stopped or scaled to
// zero) repeats nothing.
type Forwarder struct {
	cfg  ForwarderConfig
	reqs chan *submission

	// Owned by the Run loop.
	buf     *Buffer
	sender  Sender
	retryAt time.Time
	backoff time.Duration
	wasUp   bool

	mu     sync.Mutex
	status ForwardStatus
}

type submission struct {
	recs []Record
	done chan error
}

// NewForwarder returns a forwarder; Run opens the buffer.
func NewForwarder(cfg ForwarderConfig) *Forwarder {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &Forwarder{cfg: cfg, reqs: make(chan *submission), backoff: retryMin}
}

func (f *Forwarder) Name() string { return "log-forward" }

// Submit hands records to the forwarder and returns once each is acked by
// the aggregator or fsynced into the buffer: then, and only then, may the
// caller move its cursor past them. An error means neither happened for
// some of them (the disk is full or failing, or ctx ended first); the
// caller must read them again.
func (f *Forwarder) Submit(ctx context.Context, recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	req := &submission{recs: recs, done: make(chan error, 1)}
	select {
	case f.reqs <- req:
	case <-ctx.Done():
		return ctx.Err()
	}
	// The loop answers every submission it takes, even when it panics.
	return <-req.done
}

// Status returns the forwarder's state.
func (f *Forwarder) Status() ForwardStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Run sends until ctx ends.
func (f *Forwarder) Run(ctx context.Context) error {
	if f.buf == nil {
		buf, err := OpenBuffer(f.cfg.BufferDir, f.cfg.BufferMaxBytes, func(reason string, n int64) {
			f.cfg.Metrics.Dropped.WithLabelValues(reason).Add(float64(n))
			f.cfg.Log.Warn("log records dropped", "reason", reason, "records", n)
		})
		if err != nil {
			return err
		}
		f.buf = buf
		if n, _ := buf.Len(); n > 0 {
			f.cfg.Log.Info("log buffer holds records from before; resending them first", "records", n)
		}
	}
	f.publish()
	defer func() {
		if f.sender != nil {
			f.sender.Close()
			f.sender = nil
		}
		f.buf.SaveHead()
		f.setUp(false)
	}()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		if !f.buf.Empty() && f.connected() {
			if err := f.drain(ctx); err != nil {
				return err
			}
			if f.sender != nil && !f.buf.Empty() {
				select {
				case req := <-f.reqs:
					f.handle(req)
				case <-ctx.Done():
					return nil
				default:
				}
				continue
			}
		}
		var wake <-chan time.Time
		if f.sender == nil {
			// Down: reconnect when the back-off ends, even with nothing to
			// send, so kubeup_log_forward_up tells the truth. (Go 1.23+
			// timers: Reset never leaves a stale tick behind.)
			timer.Reset(max(f.retryAt.Sub(f.cfg.Now()), 0))
			wake = timer.C
		}
		select {
		case req := <-f.reqs:
			f.handle(req)
		case <-wake:
			if f.buf.Empty() {
				f.connected()
			}
		case <-ctx.Done():
			return nil
		}
		timer.Stop()
	}
}

// handle delivers one submission: straight to the aggregator while the
// buffer is empty and the connection works, otherwise (and from the first
// failed send on) into the buffer.
func (f *Forwarder) handle(req *submission) {
	answered := false
	defer func() {
		if !answered {
			req.done <- errors.New("log forwarder failed")
		}
	}()
	recs := req.recs
	if f.buf.Empty() && f.connected() {
		for len(recs) > 0 {
			if err := f.sender.Send(recs[0]); err != nil {
				f.fail(err)
				break
			}
			f.sent(1)
			recs = recs[1:]
		}
	}
	var err error
	if len(recs) > 0 {
		err = f.buf.Append(recs)
		if err != nil {
			f.cfg.Log.Error("cannot buffer log records; the source will read them again", "err", err)
		}
		f.publish()
	}
	req.done <- err
	answered = true
}

// drain resends up to drainChunk buffered records, oldest first.
func (f *Forwarder) drain(ctx context.Context) error {
	n := 0
	for ; n < drainChunk && ctx.Err() == nil; n++ {
		r, err := f.buf.Peek()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		if err := f.sender.Send(r); err != nil {
			f.fail(err)
			break
		}
		f.sent(1)
		if err := f.buf.Pop(); err != nil {
			return err
		}
	}
	if n > 0 {
		if err := f.buf.SaveHead(); err != nil {
			return err
		}
		if f.buf.Empty() {
			f.cfg.Log.Info("log buffer resent")
		}
	}
	f.publish()
	return nil
}

// connected reports whether there is a connection, dialling when the
// back-off allows.
func (f *Forwarder) connected() bool {
	if f.sender != nil {
		return true
	}
	if f.cfg.Now().Before(f.retryAt) {
		return false
	}
	s, err := f.cfg.Dial()
	if err != nil {
		f.fail(err)
		return false
	}
	f.sender = s
	f.setUp(true)
	return true
}

// fail drops the connection and schedules the next attempt.
func (f *Forwarder) fail(err error) {
	f.cfg.Metrics.Errors.Inc()
	if f.sender != nil {
		f.sender.Close()
		f.sender = nil
	}
	now := f.cfg.Now()
	f.retryAt = now.Add(f.backoff)
	if f.wasUp {
		f.cfg.Log.Warn("log aggregator unreachable; buffering on disk", "err", err, "retry", f.backoff)
	} else {
		f.cfg.Log.Debug("log aggregator still unreachable", "err", err, "retry", f.backoff)
	}
	f.backoff = min(2*f.backoff, retryMax)
	f.setUp(false)
	f.mu.Lock()
	f.status.LastError, f.status.ErrorAt = err.Error(), now
	f.mu.Unlock()
}

func (f *Forwarder) sent(n int) {
	f.cfg.Metrics.Sent.Add(float64(n))
	f.backoff = retryMin
}

func (f *Forwarder) setUp(up bool) {
	if up && !f.wasUp {
		f.cfg.Log.Info("log aggregator connected")
	}
	f.wasUp = up
	f.cfg.Metrics.Up.Set(b2f(up))
	f.mu.Lock()
	f.status.Up = up
	f.mu.Unlock()
}

func (f *Forwarder) publish() {
	records, bytes := f.buf.Len()
	f.cfg.Metrics.setBuffer(records, bytes)
	f.mu.Lock()
	f.status.BufferedRecords, f.status.BufferedBytes = records, bytes
	f.mu.Unlock()
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Fluent client timeouts: connecting, writing a record, and waiting for
// its ack. An aggregator that accepts connections but does not ack costs
// ackTimeout per attempt, then records go to the buffer.
const (
	dialTimeout  = 5 * time.Second
	writeTimeout = 10 * time.Second
	ackTimeout   = 10 * time.Second
)

// FluentDialer connects to a forward-protocol server at addr (host:port)
// with fluent-logger-golang in synchronous mode: RequestAck (the server
// acks each record once its pipeline accepted it), SubSecondPrecision
// (EventTime, nanoseconds), and a single attempt per call (MaxRetry 1):
// the Forwarder owns retries, back-off and buffering, and the library's
// own retry loop would block the sources for minutes.
//
// The library has no batch (Forward or PackedForward mode) API: each
// record costs one round trip for its ack, which bounds throughput by the
// latency to the aggregator (see BenchmarkForward).
func FluentDialer(addr string) (Dialer, error) {
	return fluentDialer(addr, dialTimeout, writeTimeout, ackTimeout)
}

func fluentDialer(addr string, dialTimeout, writeTimeout, ackTimeout time.Duration) (Dialer, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("log aggregator address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return nil, fmt.Errorf("log aggregator address %q: bad port", addr)
	}
	return func() (Sender, error) {
		fl, err := fluent.New(fluent.Config{
			FluentNetwork:      "tcp",
			FluentHost:         host,
			FluentPort:         port,
			Timeout:            dialTimeout,
			WriteTimeout:       writeTimeout,
			ReadTimeout:        ackTimeout,
			MaxRetry:           1,
			RequestAck:         true,
			SubSecondPrecision: true,
		})
		if err != nil {
			return nil, fmt.Errorf("connect to log aggregator %s: %w", addr, err)
		}
		return &fluentSender{fl: fl, addr: addr}, nil
	}, nil
}

type fluentSender struct {
	fl   *fluent.Fluent
	addr string
}

func (s *fluentSender) Send(r Record) error {
	if err := s.fl.PostWithTime(r.Tag, r.Time, msgp.Raw(r.Body)); err != nil {
		return fmt.Errorf("send to log aggregator %s: %w", s.addr, err)
	}
	return nil
}

func (s *fluentSender) Close() error { return s.fl.Close() }
