package apilb

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// testPKI is a CA, a server certificate for 127.0.0.1 and a client
// certificate, on disk like a machine's.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	server                    tls.Certificate
	pool                      *x509.CertPool
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	leaf := func(serial int64, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "leaf"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, key
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := &testPKI{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	p.caFile = write("ca.crt", "CERTIFICATE", caDER)
	cDER, cKey := leaf(2, x509.ExtKeyUsageClientAuth)
	p.certFile = write("client.crt", "CERTIFICATE", cDER)
	ck, _ := x509.MarshalECPrivateKey(cKey)
	p.keyFile = write("client.key", "EC PRIVATE KEY", ck)
	sDER, sKey := leaf(3, x509.ExtKeyUsageServerAuth)
	p.server = tls.Certificate{Certificate: [][]byte{sDER}, PrivateKey: sKey}
	return p
}

// fakeAPIServer answers /readyz (200 while ready, and only to a client
// certificate, like an API server without anonymous auth) and /who with
// its name.
type fakeAPIServer struct {
	name   string
	ready  atomic.Bool
	checks atomic.Int64
	srv    *httptest.Server
}

func newFakeAPIServer(t *testing.T, p *testPKI, name string) *fakeAPIServer {
	t.Helper()
	f := &fakeAPIServer{name: name}
	f.ready.Store(true)
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/readyz":
			f.checks.Add(1)
			if !f.ready.Load() {
				http.Error(w, "not ready", http.StatusInternalServerError)
				return
			}
			io.WriteString(w, "ok")
		case "/who":
			io.WriteString(w, f.name)
		case "/watch": // a long-lived response, like a watch
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		}
	}))
	f.srv.TLS = &tls.Config{Certificates: []tls.Certificate{p.server}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: p.pool}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeAPIServer) addr() string { return strings.TrimPrefix(f.srv.URL, "https://") }

// client is an API client through the balancer: a new connection per
// request, so each request is one balancing decision.
func (p *testPKI) client(t *testing.T) *http.Client {
	cert, err := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		TLSClientConfig: &tls.Config{RootCAs: p.pool, Certificates: []tls.Certificate{cert}}}}
}

func who(t *testing.T, c *http.Client, lb *Balancer) string {
	t.Helper()
	resp, err := c.Get("https://" + lb.Addr().String() + "/who")
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func startBalancer(t *testing.T, o Options) *Balancer {
	t.Helper()
	o.Listen = "127.0.0.1:0"
	if o.Interval == 0 {
		o.Interval = 50 * time.Millisecond
	}
	o.Timeout = time.Second
	lb, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- lb.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return lb
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPrefersItsOwnAPIServerAndFailsOver(t *testing.T) {
	p := newTestPKI(t)
	a, b := newFakeAPIServer(t, p, "a"), newFakeAPIServer(t, p, "b")
	lb := startBalancer(t, Options{Backends: []string{a.addr(), b.addr()}, Prefer: b.addr(),
		CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile})
	c := p.client(t)
	for range 5 {
		if got := who(t, c, lb); got != "b" {
			t.Fatalf("with the preferred backend healthy, got %q, want b", got)
		}
	}
	waitFor(t, "authenticated health checks", func() bool { return b.checks.Load() > 0 })

	// A watch through b, then b stops being ready: the watch is closed
	// (it would otherwise wait on b), new connections go to a.
	resp, err := c.Get("https://" + lb.Addr().String() + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	go func() { io.Copy(io.Discard, resp.Body); close(ended) }()
	b.ready.Store(false)
	waitFor(t, "b out", func() bool { return !lb.Status()[1].Healthy })
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("the watch through the unhealthy backend was not closed")
	}
	for range 5 {
		if got := who(t, c, lb); got != "a" {
			t.Fatalf("with b unhealthy, got %q, want a", got)
		}
	}
	b.ready.Store(true)
	waitFor(t, "b back", func() bool { return lb.Status()[1].Healthy })
	if got := who(t, c, lb); got != "b" {
		t.Fatalf("b back: got %q, want b", got)
	}
}

func TestSpreadsOverHealthyBackends(t *testing.T) {
	p := newTestPKI(t)
	a, b := newFakeAPIServer(t, p, "a"), newFakeAPIServer(t, p, "b")
	lb := startBalancer(t, Options{Backends: []string{a.addr(), b.addr()}, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile})
	c := p.client(t)
	seen := map[string]int{}
	for range 10 {
		seen[who(t, c, lb)]++
	}
	if seen["a"] == 0 || seen["b"] == 0 || len(seen) != 2 {
		t.Fatalf("answers %v: want both backends and nothing else", seen)
	}
}

// A backend that stopped (connection refused) before any check noticed:
// the connection goes to the next one at once.
func TestDialFailureTriesTheNext(t *testing.T) {
	p := newTestPKI(t)
	a, b := newFakeAPIServer(t, p, "a"), newFakeAPIServer(t, p, "b")
	lb := startBalancer(t, Options{Backends: []string{a.addr(), b.addr()}, Prefer: a.addr(), Interval: time.Hour,
		CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile})
	a.srv.Close()
	c := p.client(t)
	for range 3 {
		if got := who(t, c, lb); got != "b" {
			t.Fatalf("a closed: got %q, want b", got)
		}
	}
}

// With every backend failing its checks, connections are still tried (an
// API server that is starting), and none is closed.
func TestNoHealthyBackendStillTries(t *testing.T) {
	p := newTestPKI(t)
	a, b := newFakeAPIServer(t, p, "a"), newFakeAPIServer(t, p, "b")
	a.ready.Store(false)
	b.srv.Close()
	lb := startBalancer(t, Options{Backends: []string{a.addr(), b.addr()}, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile})
	waitFor(t, "both out", func() bool { return !lb.Status()[0].Healthy && !lb.Status()[1].Healthy })
	if got := who(t, p.client(t), lb); got != "a" {
		t.Fatalf("got %q, want a", got)
	}
	rec := httptest.NewRecorder()
	lb.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with no healthy backend: %d, want 503", rec.Code)
	}
}

// Without a client certificate on disk (a metal node before it joins) a
// check is a TCP connect.
func TestCheckWithoutCertificateIsTCPConnect(t *testing.T) {
	p := newTestPKI(t)
	a := newFakeAPIServer(t, p, "a")
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	lb := startBalancer(t, Options{Backends: []string{a.addr(), dead}, CAFile: p.caFile,
		CertFile: filepath.Join(p.dir, "missing.crt"), KeyFile: filepath.Join(p.dir, "missing.key")})
	waitFor(t, "the dead backend out", func() bool { return !lb.Status()[1].Healthy })
	if !lb.Status()[0].Healthy {
		t.Error("the listening backend is unhealthy")
	}
	if a.checks.Load() != 0 {
		t.Error("checked /readyz without a certificate")
	}
}

// A single API server is not health-checked: there is nothing to fail
// over to, and each check is work for it.
func TestSingleBackendIsNotChecked(t *testing.T) {
	p := newTestPKI(t)
	a := newFakeAPIServer(t, p, "a")
	lb := startBalancer(t, Options{Backends: []string{a.addr()}, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile})
	if got := who(t, p.client(t), lb); got != "a" {
		t.Fatalf("got %q, want a", got)
	}
	time.Sleep(300 * time.Millisecond) // six check intervals
	if n := a.checks.Load(); n != 0 {
		t.Errorf("the only API server was checked %d times", n)
	}
	rec := httptest.NewRecorder()
	lb.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if strings.Contains(rec.Body.String(), "kubeup_apilb_backend_healthy{") {
		t.Error("a health gauge for an unchecked API server")
	}
}

func TestMetrics(t *testing.T) {
	p := newTestPKI(t)
	a, b := newFakeAPIServer(t, p, "a"), newFakeAPIServer(t, p, "b")
	lb := startBalancer(t, Options{Backends: []string{a.addr(), b.addr()}, Prefer: a.addr(), CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile})
	who(t, p.client(t), lb)
	waitFor(t, "a check", func() bool { return a.checks.Load() > 0 })
	rec := httptest.NewRecorder()
	lb.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{
		`kubeup_apilb_backend_healthy{backend="` + a.addr() + `"} 1`,
		`kubeup_apilb_dials_total{backend="` + a.addr() + `"} 1`,
		`kubeup_apilb_health_checks_total{backend="` + a.addr() + `"}`,
		`kubeup_apilb_bytes_total{backend="` + a.addr() + `",direction="up"}`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Listen: "nope", Backends: []string{"10.0.0.1:6443"}}, "--listen"},
		{Options{Listen: "127.0.0.1:7445"}, "--backends: give at least one"},
		{Options{Listen: "127.0.0.1:7445", Backends: []string{"10.0.0.1"}}, `--backends: "10.0.0.1"`},
		{Options{Listen: "127.0.0.1:7445", Backends: []string{"10.0.0.1:6443"}, Prefer: "10.0.0.2:6443"}, "--prefer"},
		{Options{Listen: "127.0.0.1:7445", Backends: []string{"10.0.0.1:6443"}, CertFile: "c"}, "--cacert"},
	} {
		err := tc.o.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one naming %q", tc.o, err, tc.want)
		}
	}
}

// A backend that is out is checked ever less often, up to MaxInterval.
func TestNextCheckBacksOff(t *testing.T) {
	o := Options{Interval: 3 * time.Second, FailAfter: 2, MaxInterval: 15 * time.Second}
	want := []time.Duration{3, 3, 3, 6, 12, 15, 15}
	for fails, w := range want {
		if got := o.nextCheck(fails); got != w*time.Second {
			t.Errorf("nextCheck(%d) = %s, want %s", fails, got, w*time.Second)
		}
	}
	o.setDefaults()
	if o.MaxInterval != DefaultMaxInterval {
		t.Errorf("default MaxInterval %s, want %s", o.MaxInterval, DefaultMaxInterval)
	}
}

// While no API server answers, one warning per WarnEvery with the count
// refused meanwhile; the first connection taken again ends the outage with
// its length, and the next refusal warns at once.
func TestOutageWarningsAreRateLimited(t *testing.T) {
	var buf strings.Builder
	b := &Balancer{backends: make([]*backend, 1), opts: Options{WarnEvery: 10 * time.Second,
		Log: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))}}
	t0 := time.Date(2026, 12, 7, 21, 36, 0, 0, time.UTC)
	for i := range 11 { // 0 s .. 10 s
		b.refused(t0.Add(time.Duration(i) * time.Second))
	}
	b.refused(t0.Add(11 * time.Second))
	b.answered(t0.Add(12*time.Second), "10.77.0.10:6443")
	b.answered(t0.Add(13*time.Second), "10.77.0.10:6443")
	b.refused(t0.Add(20 * time.Second))
	want := `level=WARN msg="no API server answered" backends=1 refused=1 for=0s
level=WARN msg="no API server answered" backends=1 refused=10 for=10s
level=INFO msg="an API server answers again" backend=10.77.0.10:6443 after=12s refused=12
level=WARN msg="no API server answered" backends=1 refused=1 for=0s
`
	if buf.String() != want {
		t.Errorf("log:\n%s\nwant:\n%s", buf.String(), want)
	}
}
