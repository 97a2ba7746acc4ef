package httpauth

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"
)

// TLSFiles holds the serving certificate and the client CA, reloading them
// when their files change: certificate rotation needs no restart. Files
// are stat'ed at most every reloadCheckInterval, during a handshake or a
// client-certificate check.
type TLSFiles struct {
	certFile, keyFile, caFile string
	now                       func() time.Time

	mu      sync.Mutex
	checked time.Time
	stamps  [3]fileStamp
	cert    *tls.Certificate
	pool    *x509.CertPool
	lastErr error
}

const reloadCheckInterval = 10 * time.Second

type fileStamp struct {
	mod  time.Time
	size int64
}

// NewTLSFiles loads the serving certificate and key and the client CA; now
// is the clock (nil: time.Now).
func NewTLSFiles(certFile, keyFile, caFile string, now func() time.Time) (*TLSFiles, error) {
	if now == nil {
		now = time.Now
	}
	t := &TLSFiles{certFile: certFile, keyFile: keyFile, caFile: caFile, now: now}
	if err := t.Reload(true); err != nil {
		return nil, err
	}
	return t, nil
}

// Reload re-reads the files if they changed (or force), at most every
// reloadCheckInterval unless forced; on error the previous certificate and
// CA stay in use and Err reports the failure.
func (t *TLSFiles) Reload(force bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if !force && now.Sub(t.checked) < reloadCheckInterval {
		return t.lastErr
	}
	t.checked = now
	var stamps [3]fileStamp
	for i, f := range []string{t.certFile, t.keyFile, t.caFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.lastErr = fmt.Errorf("tls: %w", err)
			return t.lastErr
		}
		stamps[i] = fileStamp{fi.ModTime(), fi.Size()}
	}
	if !force && stamps == t.stamps {
		return t.lastErr
	}
	cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		t.lastErr = fmt.Errorf("tls: serving certificate: %w", err)
		return t.lastErr
	}
	pem, err := os.ReadFile(t.caFile)
	if err != nil {
		t.lastErr = fmt.Errorf("tls: client CA: %w", err)
		return t.lastErr
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.lastErr = fmt.Errorf("tls: client CA %s: no PEM certificate", t.caFile)
		return t.lastErr
	}
	t.cert, t.pool, t.stamps, t.lastErr = &cert, pool, stamps, nil
	return nil
}

func (t *TLSFiles) current() (*tls.Certificate, *x509.CertPool) {
	_ = t.Reload(false) // a failed reload keeps serving what was loaded; Err reports it
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cert, t.pool
}

// Err is the last reload failure, if any.
func (t *TLSFiles) Err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.lastErr
}

// CipherSuites are the TLS 1.2 suites kubeup's servers offer: the cluster's
// list (components.TLSCipherSuites, kept equal by a test), ECDHE with
// AES-GCM only. TLS 1.3 suites are Go's, all strong.
var CipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
}

// ServerConfig: TLS 1.2+ with CipherSuites, client certificates requested
// but optional, and verified by the handlers (VerifyClient) rather than the
// handshake, so a bad certificate gets an HTTP 401 that says why instead of
// a TLS alert.
func (t *TLSFiles) ServerConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		CipherSuites: slices.Clone(CipherSuites),
		ClientAuth:   tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _ := t.current()
			return c, nil
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// VerifyClient verifies a presented client certificate chain against the
// client CA, for client authentication: the leaf, or nil when none was
// presented.
func (t *TLSFiles) VerifyClient(state *tls.ConnectionState) (*x509.Certificate, error) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return nil, nil
	}
	_, pool := t.current()
	leaf := state.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots: pool, Intermediates: inter, CurrentTime: t.now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return nil, err
	}
	return leaf, nil
}
