package apilb

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Options configure a load balancer.
type Options struct {
	// Listen is the address clients dial (127.0.0.1:7445).
	Listen string
	// Backends are the API servers, host:port.
	Backends []string
	// Prefer is the backend used while it is healthy (a master's own API
	// server: no hop across the network); empty for none.
	Prefer string
	// CAFile verifies the API servers in health checks; CertFile and
	// KeyFile authenticate them, read at each new connection (the agent
	// renews them in place). Without a certificate on disk a check is a
	// TCP connect.
	CAFile, CertFile, KeyFile string
	// Interval between checks of a backend, Timeout of one check, and
	// FailAfter consecutive failures that take a backend out (one success
	// brings it back).
	Interval, Timeout time.Duration
	FailAfter         int
	// MaxInterval: a backend that is out is checked ever less often, the
	// interval doubling from Interval up to MaxInterval, and again every
	// Interval once a check succeeds.
	MaxInterval time.Duration
	// DialTimeout bounds a connection attempt to a backend.
	DialTimeout time.Duration
	// WarnEvery: while no API server answers, one warning per this long,
	// with the number of connections refused meanwhile (default 10 s).
	WarnEvery time.Duration
	Log       *slog.Logger
}

// Defaults: a hard-stopped master is out within Interval + FailAfter ×
// Timeout (about 11 s), while one slow /readyz on a busy emulated master
// (TCG) does not take it out.
const (
	DefaultInterval    = 3 * time.Second
	DefaultTimeout     = 4 * time.Second
	DefaultFailAfter   = 2
	DefaultDialTimeout = 3 * time.Second
	// DefaultMaxInterval: checks of an API server that is out cost a
	// dial and often a TLS handshake each; on 3 booting one-vCPU masters
	// under TCG, checking every backend every 3 s made kubeup-apilb the
	// third busiest process (2m10s of CPU in 23 minutes). A master that
	// comes back is in again within 15 s.
	DefaultMaxInterval = 15 * time.Second
	// DefaultWarnEvery: a warning per refused connection was 1,288 of the
	// node's 1,378 journal lines (242 of the master's 413) while an API
	// server restarted for two minutes under make e2e (2026-12-07), each
	// line written by journald and shipped to the log store on machines
	// already short of CPU.
	DefaultWarnEvery = 10 * time.Second
)

func (o *Options) setDefaults() {
	if o.Interval == 0 {
		o.Interval = DefaultInterval
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.FailAfter == 0 {
		o.FailAfter = DefaultFailAfter
	}
	if o.WarnEvery == 0 {
		o.WarnEvery = DefaultWarnEvery
	}
	if o.DialTimeout == 0 {
		o.DialTimeout = DefaultDialTimeout
	}
	if o.MaxInterval == 0 {
		o.MaxInterval = max(DefaultMaxInterval, o.Interval)
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Validate reports a bad option by its flag name.
func (o Options) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", o.Listen, err))
	}
	if len(o.Backends) == 0 {
		errs = append(errs, errors.New("--backends: give at least one API server as host:port"))
	}
	for _, b := range o.Backends {
		if _, _, err := net.SplitHostPort(b); err != nil {
			errs = append(errs, fmt.Errorf("--backends: %q: %w", b, err))
		}
	}
	if o.Prefer != "" && !slices.Contains(o.Backends, o.Prefer) {
		errs = append(errs, fmt.Errorf("--prefer %q is not one of --backends", o.Prefer))
	}
	if o.CAFile == "" && o.CertFile != "" {
		errs = append(errs, errors.New("--cacert: needed with --cert"))
	}
	return errors.Join(errs...)
}

// Balancer is a running load balancer.
type Balancer struct {
	opts     Options
	backends []*backend
	ln       net.Listener
	rr       atomic.Uint64
	wg       sync.WaitGroup
	outage   outage
}

// outage rate-limits the warning about connections no API server took:
// the first refusal warns at once, later ones at most every WarnEvery
// with how many there were, and the first connection an API server takes
// again says how long none did.
type outage struct {
	mu       sync.Mutex
	since    time.Time // first refusal of this outage; zero when none
	lastWarn time.Time
	refused  int // since lastWarn
	total    int // since since
}

// refused records a connection no backend took.
func (b *Balancer) refused(now time.Time) {
	o := &b.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		o.since = now
	}
	o.refused++
	o.total++
	if !o.lastWarn.IsZero() && now.Sub(o.lastWarn) < b.opts.WarnEvery {
		return
	}
	b.opts.Log.Warn("no API server answered", "backends", len(b.backends), "refused", o.refused, "for", now.Sub(o.since).Round(time.Second).String())
	o.lastWarn, o.refused = now, 0
}

// answered ends an outage, if one was under way.
func (b *Balancer) answered(now time.Time, backend string) {
	o := &b.outage
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.since.IsZero() {
		return
	}
	b.opts.Log.Info("an API server answers again", "backend", backend, "after", now.Sub(o.since).Round(time.Second).String(), "refused", o.total)
	o.since, o.lastWarn, o.refused, o.total = time.Time{}, time.Time{}, 0, 0
}

// backend is one API server and the connections through it.
type backend struct {
	addr    string
	healthy atomic.Bool
	fails   int // consecutive failed checks (health loop only)

	mu    sync.Mutex
	conns map[net.Conn]struct{} // client side of each proxied connection

	checks, checkFailures, dials, dialFailures atomic.Uint64
	transitions                                atomic.Uint64
	bytesUp, bytesDown                         atomic.Uint64
	client                                     *http.Client
}

// New checks the options and listens.
func New(o Options) (*Balancer, error) {
	o.setDefaults()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	b := &Balancer{opts: o}
	for _, addr := range o.Backends {
		be := &backend{addr: addr, conns: map[net.Conn]struct{}{}}
		be.client = b.checkClient(addr)
		// Healthy until checked: connections made before the first
		// check completes go somewhere.
		be.healthy.Store(true)
		b.backends = append(b.backends, be)
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", o.Listen, err)
	}
	b.ln = ln
	return b, nil
}

// Addr is the listening address.
func (b *Balancer) Addr() net.Addr { return b.ln.Addr() }

// checked: the backends are health-checked only when there is a choice.
// With one API server (a single master) a check could change nothing, and
// every /readyz is work for a machine that is often short of CPU (under
// TCG a loaded API server answered them in over 4 s).
func (b *Balancer) checked() bool { return len(b.backends) > 1 }

// Run serves until ctx ends, then closes every connection.
func (b *Balancer) Run(ctx context.Context) error {
	for _, be := range b.backends {
		if !b.checked() {
			break
		}
		b.wg.Add(1)
		go func() { defer b.wg.Done(); b.healthLoop(ctx, be) }()
	}
	go func() { <-ctx.Done(); b.ln.Close() }()
	var err error
	for {
		c, aerr := b.ln.Accept()
		if aerr != nil {
			if ctx.Err() == nil {
				err = fmt.Errorf("accept: %w", aerr)
			}
			break
		}
		b.wg.Add(1)
		go func() { defer b.wg.Done(); b.proxy(ctx, c) }()
	}
	for _, be := range b.backends {
		be.closeAll()
	}
	b.wg.Wait()
	return err
}

// order is the backends to try for a new connection: the preferred one if
// healthy, else the healthy ones round-robin; the unhealthy ones after them
// (a check may lag a backend that came back; when none is healthy, trying
// them all is all there is to do).
func (b *Balancer) order() []*backend {
	var healthy, rest []*backend
	for _, be := range b.backends {
		if be.healthy.Load() {
			healthy = append(healthy, be)
		} else {
			rest = append(rest, be)
		}
	}
	if n := len(healthy); n > 1 {
		i := slices.IndexFunc(healthy, func(be *backend) bool { return be.addr == b.opts.Prefer })
		if i < 0 {
			i = int(b.rr.Add(1) % uint64(n))
		}
		healthy = append(healthy[i:], healthy[:i]...)
	}
	return append(healthy, rest...)
}

func (b *Balancer) proxy(ctx context.Context, client net.Conn) {
	defer client.Close()
	var server net.Conn
	var be *backend
	for _, cand := range b.order() {
		cand.dials.Add(1)
		d := net.Dialer{Timeout: b.opts.DialTimeout, KeepAlive: 15 * time.Second}
		c, err := d.DialContext(ctx, "tcp", cand.addr)
		if err != nil {
			cand.dialFailures.Add(1)
			b.opts.Log.Debug("dial failed", "backend", cand.addr, "err", err)
			continue
		}
		server, be = c, cand
		break
	}
	if server == nil {
		b.refused(time.Now())
		return
	}
	b.answered(time.Now(), be.addr)
	defer server.Close()
	be.track(client, true)
	defer be.track(client, false)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn, n *atomic.Uint64) {
		w, _ := io.Copy(dst, src)
		n.Add(uint64(w))
		// Half-close: the other direction may still be sending.
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, client, &be.bytesUp)
	go pipe(client, server, &be.bytesDown)
	<-done
	// One direction ended: give the other a moment to drain, then close
	// both (a backend that vanished never ends its side).
	select {
	case <-done:
	case <-time.After(30 * time.Second):
	case <-ctx.Done():
	}
}

func (be *backend) track(c net.Conn, add bool) {
	be.mu.Lock()
	defer be.mu.Unlock()
	if add {
		be.conns[c] = struct{}{}
	} else {
		delete(be.conns, c)
	}
}

// closeAll closes the client side of every connection through be: the
// proxy goroutines end and the clients reconnect, through a healthy
// backend.
func (be *backend) closeAll() int {
	be.mu.Lock()
	defer be.mu.Unlock()
	for c := range be.conns {
		c.Close()
	}
	return len(be.conns)
}

func (be *backend) active() int {
	be.mu.Lock()
	defer be.mu.Unlock()
	return len(be.conns)
}

func (b *Balancer) healthLoop(ctx context.Context, be *backend) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		err := b.check(ctx, be)
		if ctx.Err() != nil {
			return
		}
		b.record(be, err)
		t.Reset(b.opts.nextCheck(be.fails))
	}
}

// nextCheck is the wait before the next check after fails consecutive
// failures: Interval until the backend is out (FailAfter), then doubling
// up to MaxInterval.
func (o Options) nextCheck(fails int) time.Duration {
	d := o.Interval
	for i := o.FailAfter; i < fails && d < o.MaxInterval; i++ {
		d *= 2
	}
	return min(d, max(o.MaxInterval, o.Interval))
}

// record applies one check's result to be.
func (b *Balancer) record(be *backend, err error) {
	be.checks.Add(1)
	if err == nil {
		be.fails = 0
		if !be.healthy.Swap(true) {
			be.transitions.Add(1)
			b.opts.Log.Info("API server healthy", "backend", be.addr)
		}
		return
	}
	be.checkFailures.Add(1)
	be.fails++
	if be.fails < b.opts.FailAfter || !be.healthy.Load() {
		return
	}
	be.healthy.Store(false)
	be.transitions.Add(1)
	// Move its connections only when there is somewhere to move them:
	// with every API server down, closing would only make clients retry
	// into nothing.
	moved := 0
	if b.anyHealthy() {
		moved = be.closeAll()
	}
	b.opts.Log.Warn("API server unhealthy", "backend", be.addr, "err", err, "failures", be.fails, "connections_closed", moved)
}

func (b *Balancer) anyHealthy() bool {
	return slices.ContainsFunc(b.backends, func(be *backend) bool { return be.healthy.Load() })
}

// check is one health check: GET /readyz with the client certificate, or a
// TCP connect when there is none on disk.
func (b *Balancer) check(ctx context.Context, be *backend) error {
	ctx, cancel := context.WithTimeout(ctx, b.opts.Timeout)
	defer cancel()
	if be.client == nil || !b.haveCert() {
		d := net.Dialer{}
		c, err := d.DialContext(ctx, "tcp", be.addr)
		if err != nil {
			return err
		}
		return c.Close()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+be.addr+"/readyz", nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kubeup-apilb")
	resp, err := be.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s", resp.Status)
	}
	return nil
}

func (b *Balancer) haveCert() bool {
	if b.opts.CertFile == "" {
		return false
	}
	_, err := os.Stat(b.opts.CertFile)
	return err == nil
}

// checkClient is a backend's health-check client: one kept-alive
// connection (a TLS handshake per check would cost a busy master more than
// the check), the CA read once per new connection, and the client
// certificate read at each handshake.
func (b *Balancer) checkClient(addr string) *http.Client {
	if b.opts.CAFile == "" {
		return nil
	}
	o := b.opts
	tlsCfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The CA is read at each handshake too (VerifyConnection), so a
		// CA file that appears later (a joining node) is used.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyPeer(o.CAFile, cs)
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
			if err != nil {
				return nil, err
			}
			return &c, nil
		},
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     tlsCfg,
		MaxIdleConnsPerHost: 1,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
		DialContext:         (&net.Dialer{KeepAlive: 15 * time.Second}).DialContext,
	}}
}

// verifyPeer checks the server's chain against the CA file. The name is
// not checked: the balancer dials addresses it was given, and each API
// server's certificate names its own.
func verifyPeer(caFile string, cs tls.ConnectionState) error {
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("%s: no certificate in it", caFile)
	}
	if len(cs.PeerCertificates) == 0 {
		return errors.New("the server sent no certificate")
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	_, err = cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter})
	return err
}

// BackendStatus is one backend as the balancer sees it.
type BackendStatus struct {
	Addr    string `json:"addr"`
	Healthy bool   `json:"healthy"`
	Active  int    `json:"active"`
}

// Status is every backend's state.
func (b *Balancer) Status() []BackendStatus {
	var out []BackendStatus
	for _, be := range b.backends {
		out = append(out, BackendStatus{Addr: be.addr, Healthy: be.healthy.Load(), Active: be.active()})
	}
	return out
}
