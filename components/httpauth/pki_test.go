package httpauth

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// ca is a throw-away certificate authority.
type ca struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

var serials atomic.Int64

// sign makes a certificate for tmpl signed by parent (itself when nil),
// returning it and its key in PEM.
func sign(t *testing.T, tmpl *x509.Certificate, parent *ca) (cert *x509.Certificate, key *ecdsa.PrivateKey, certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serials.Add(1))
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	issuer, signer := tmpl, key
	if parent != nil {
		issuer, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, signer)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ = x509.ParseCertificate(der)
	return cert, key, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

func newCA(t *testing.T, cn string) *ca {
	cert, key, certPEM, _ := sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}, nil)
	return &ca{cert: cert, key: key, pem: certPEM}
}

// serving issues a serving certificate for 127.0.0.1.
func (c *ca) serving(t *testing.T, cn string) (certPEM, keyPEM []byte) {
	_, _, certPEM, keyPEM = sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: cn}, NotAfter: time.Now().Add(2 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}, c)
	return certPEM, keyPEM
}

// client issues a client certificate.
func (c *ca) client(t *testing.T, cn string, orgs ...string) tls.Certificate {
	_, _, certPEM, keyPEM := sign(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: cn, Organization: orgs}, NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, c)
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return pair
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
