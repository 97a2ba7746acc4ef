package httpauth

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
)

func TestTLSReload(t *testing.T) {
	pki := newFiles(t)
	now := time.Now()
	clock := func() time.Time { return now }
	files, err := NewTLSFiles(pki.certFile, pki.keyFile, pki.caFile, clock)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := files.current()

	c, k := pki.ca.serving(t, "kubeup-agent-rotated")
	writeFile(t, pki.certFile, c)
	writeFile(t, pki.keyFile, k)
	if got, _ := files.current(); got != first {
		t.Error("reloaded before the check interval")
	}
	now = now.Add(reloadCheckInterval)
	if got, _ := files.current(); got == first || subject(t, got) != "CN=kubeup-agent-rotated" {
		t.Error("rotated certificate not picked up")
	}

	// A half-written rotation keeps the working certificate.
	second, _ := files.current()
	writeFile(t, pki.keyFile, []byte("garbage"))
	now = now.Add(reloadCheckInterval)
	if got, _ := files.current(); got != second || files.Err() == nil {
		t.Errorf("bad key: cert replaced or no error (%v)", files.Err())
	}

	if _, err := NewTLSFiles(pki.certFile, filepath.Join(t.TempDir(), "none"), pki.caFile, clock); err == nil {
		t.Error("missing key accepted at start")
	}
}

func subject(t *testing.T, c *tls.Certificate) string {
	t.Helper()
	x, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return x.Subject.String()
}

// The servers offer the cluster's cipher list, and a handshake with
// anything weaker (a CBC suite, TLS 1.1) fails.
func TestServerConfigCipherSuites(t *testing.T) {
	var names []string
	for _, id := range CipherSuites {
		names = append(names, tls.CipherSuiteName(id))
	}
	if want := components.TLSCipherSuites(); !slices.Equal(names, want) {
		t.Errorf("httpauth.CipherSuites %v, components.TLSCipherSuites %v", names, want)
	}

	pki := newFiles(t)
	files, err := NewTLSFiles(pki.certFile, pki.keyFile, pki.caFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := tls.Listen("tcp", "127.0.0.1:0", files.ServerConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}()
		}
	}()
	dial := func(c *tls.Config) (*tls.ConnectionState, error) {
		c.InsecureSkipVerify = true // the handshake's parameters are the point here
		conn, err := tls.Dial("tcp", l.Addr().String(), c)
		if err != nil {
			return nil, err
		}
		defer conn.Close()
		st := conn.ConnectionState()
		return &st, nil
	}
	if st, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12}); err != nil || !slices.Contains(CipherSuites, st.CipherSuite) {
		t.Errorf("TLS 1.2 client: %v, %+v", err, st)
	}
	if st, err := dial(&tls.Config{}); err != nil || st.Version != tls.VersionTLS13 {
		t.Errorf("TLS 1.3 client: %v, %+v", err, st)
	}
	if _, err := dial(&tls.Config{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}}); err == nil {
		t.Error("a CBC-only TLS 1.2 client was served")
	}
	if _, err := dial(&tls.Config{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11}); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
}
