package httpauth

import (
	"crypto/tls"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"
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
