package agent

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

// testCA is a throw-away CA for tests.
type testCA struct {
	*kubetest.CA
	cert *x509.Certificate
	pem  []byte
}

func newTestCA(t *testing.T, cn string) *testCA {
	t.Helper()
	c := kubetest.NewCA(t, cn)
	return &testCA{CA: c, cert: c.Cert, pem: c.PEM}
}

// issue signs a leaf; server leaves get 127.0.0.1 and localhost.
func (ca *testCA) issue(t *testing.T, cn string, orgs []string, server bool, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	usage := x509.ExtKeyUsageClientAuth
	if server {
		usage = x509.ExtKeyUsageServerAuth
	}
	return ca.Issue(t, pkix.Name{CommonName: cn, Organization: orgs}, usage, notAfter)
}

func (ca *testCA) tlsCert(t *testing.T, cn string, orgs []string) tls.Certificate {
	t.Helper()
	return ca.TLSCertificate(t, pkix.Name{CommonName: cn, Organization: orgs}, x509.ExtKeyUsageClientAuth, time.Time{})
}

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testPKI is a CA on disk with a serving certificate for 127.0.0.1.
type testPKI struct {
	ca                        *testCA
	caFile, certFile, keyFile string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	dir := t.TempDir()
	ca := newTestCA(t, "kubernetes")
	c, k := ca.issue(t, "kubeup-agent", nil, true, time.Now().Add(time.Hour))
	return &testPKI{
		ca:       ca,
		caFile:   writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem),
		certFile: writeFile(t, filepath.Join(dir, "agent.crt"), c),
		keyFile:  writeFile(t, filepath.Join(dir, "agent.key"), k),
	}
}

func (p *testPKI) clientTLS(t *testing.T, certs ...tls.Certificate) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.cert)
	return &tls.Config{RootCAs: pool, Certificates: certs, MinVersion: tls.VersionTLS12}
}
