package logforward

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Sender is a connection to the aggregator.
type Sender interface {
	// Send sends records, all of one tag, as one message and returns once
	// the aggregator acked it. When ctx ends, the wait for the ack is cut
	// short (to shutdownGrace, for FluentDialer's connections).
	Send(ctx context.Context, recs []Record) error
	Close() error
}

// Dialer connects to the aggregator.
type Dialer func() (Sender, error)

// Forwarder timing: reconnection back-off.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
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
//   - buffer empty and aggregator up: the records are sent in batches,
//     each one message acked once (see batchSizer: consecutive records of
//     one tag, at most 512 records and 512 KiB). A submission goes out as
//     soon as it arrives, whatever its size: the sources submit what they
//     have read, so an idle source's few lines are not held back;
//   - the aggregator unreachable, refusing or not acking (a send error):
//     the failed batch's records and all later ones are appended to the
//     Buffer (fsynced), in order, and the loop reconnects with back-off
//     (1 s doubling to 30 s);
//   - buffer not empty and aggregator back: the loop resends the buffer,
//     oldest first, a batch at a time; records submitted meanwhile are
//     appended behind it, so new records never overtake buffered ones.
//     Once it is empty, records go straight out again.
//
// A batch whose send failed after it was written (the ack never came) is
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
					f.handle(ctx, req)
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
			f.handle(ctx, req)
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

// handle delivers one submission: straight to the aggregator, batch by
// batch, while the buffer is empty and the connection works, otherwise
// (and from the first failed batch on) into the buffer.
func (f *Forwarder) handle(ctx context.Context, req *submission) {
	answered := false
	defer func() {
		if !answered {
			req.done <- errors.New("log forwarder failed")
		}
	}()
	recs := req.recs
	if f.buf.Empty() && f.connected() {
		for len(recs) > 0 {
			n := batchLen(recs)
			if err := f.sender.Send(ctx, recs[:n]); err != nil {
				f.fail(err)
				break
			}
			f.sent(n)
			recs = recs[n:]
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

// drain resends one batch of the oldest buffered records.
func (f *Forwarder) drain(ctx context.Context) error {
	defer f.publish()
	var size batchSizer
	batch, err := f.buf.PeekBatch(size.fit)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := f.sender.Send(ctx, batch); err != nil {
		f.fail(err)
		return nil
	}
	f.sent(len(batch))
	if err := f.buf.Pop(); err != nil {
		return err
	}
	if err := f.buf.SaveHead(); err != nil {
		return err
	}
	if f.buf.Empty() {
		f.cfg.Log.Info("log buffer resent")
	}
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

// sent counts a batch of n records the aggregator acked.
func (f *Forwarder) sent(n int) {
	f.cfg.Metrics.Sent.Add(float64(n))
	f.cfg.Metrics.Batches.Inc()
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
