package httpauth

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kubeup.dev/kubeup/test/kubetest"
)

// ca is a throw-away certificate authority.
type ca struct {
	*kubetest.CA
	cert *x509.Certificate
	pem  []byte
}

func newCA(t *testing.T, cn string) *ca {
	c := kubetest.NewCA(t, cn)
	return &ca{CA: c, cert: c.Cert, pem: c.PEM}
}

// serving issues a serving certificate for 127.0.0.1.
func (c *ca) serving(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	return c.Issue(t, pkix.Name{CommonName: cn}, x509.ExtKeyUsageServerAuth, time.Now().Add(2*time.Hour))
}

// client issues a client certificate.
func (c *ca) client(t *testing.T, cn string, orgs ...string) tls.Certificate {
	return c.TLSCertificate(t, pkix.Name{CommonName: cn, Organization: orgs}, x509.ExtKeyUsageClientAuth, time.Time{})
}

// files is a CA and a serving certificate on disk.
type files struct {
	ca                        *ca
	caFile, certFile, keyFile string
}

func newFiles(t *testing.T) *files {
	t.Helper()
	dir := t.TempDir()
	f := &files{ca: newCA(t, "kubernetes"), caFile: filepath.Join(dir, "ca.crt"),
		certFile: filepath.Join(dir, "tls.crt"), keyFile: filepath.Join(dir, "tls.key")}
	c, k := f.ca.serving(t, "kubeup-agent")
	writeFile(t, f.caFile, f.ca.pem)
	writeFile(t, f.certFile, c)
	writeFile(t, f.keyFile, k)
	return f
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}
