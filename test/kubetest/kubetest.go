package kubetest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// Binaries finds kube-apiserver and etcd, or skips the test.
func Binaries(t testing.TB) (apiserver, etcd string) {
	t.Helper()
	return Binary(t, "kubernetes", "kube-apiserver"), Binary(t, "etcd", "etcd")
}

// Binary finds a binary of a cached artifact (kubernetes, etcd) in
// $KUBEUP_TEST_BIN_DIR or the artifact cache, or skips the test.
func Binary(t testing.TB, component, name string) string {
	t.Helper()
	if dir := os.Getenv("KUBEUP_TEST_BIN_DIR"); dir != "" {
		return filepath.Join(dir, name)
	}
	home, _ := os.UserHomeDir()
	m, _ := filepath.Glob(filepath.Join(home, ".cache/kubeup/artifacts", component, "*/root/usr/local/bin", name))
	if len(m) == 0 {
		t.Skipf("no %s: set KUBEUP_TEST_BIN_DIR to a directory with it, or build the artifacts", name)
	}
	return m[0]
}

// FreePort returns a free TCP port on 127.0.0.1.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs a command until the test ends; it is stopped by its PID, and
// the tail of its output is logged when the test failed.
func Start(t testing.TB, name string, args ...string) {
	t.Helper()
	logFile, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("%s output (tail):\n%s", filepath.Base(name), out)
		}
	})
}

// CA is a throw-away certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
	// PEM is Cert in PEM.
	PEM []byte
}

var serials atomic.Int64

// NewCA makes a CA valid for a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serials.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: k, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// Issue issues a certificate for subject with one extended usage, valid
// until notAfter (an hour from now when zero); server certificates are for
// 127.0.0.1 and localhost. It returns the certificate and key in PEM.
func (ca *CA) Issue(t testing.TB, subject pkix.Name, usage x509.ExtKeyUsage, notAfter time.Time) (certPEM, keyPEM []byte) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if notAfter.IsZero() {
		notAfter = time.Now().Add(time.Hour)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serials.Add(1)), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	if usage == x509.ExtKeyUsageServerAuth {
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &k.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}

// TLSCertificate is Issue as a tls.Certificate (a client's, typically).
func (ca *CA) TLSCertificate(t testing.TB, subject pkix.Name, usage x509.ExtKeyUsage, notAfter time.Time) tls.Certificate {
	t.Helper()
	pair, err := tls.X509KeyPair(ca.Issue(t, subject, usage, notAfter))
	if err != nil {
		t.Fatal(err)
	}
	return pair
}

// IssueFiles is Issue for an hour, written to dir/name.crt and
// dir/name.key (mode 0600).
func (ca *CA) IssueFiles(t testing.TB, dir, name string, subject pkix.Name, usage x509.ExtKeyUsage) (crt, key string) {
	t.Helper()
	c, k := ca.Issue(t, subject, usage, time.Time{})
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	for path, data := range map[string][]byte{crt: c, key: k} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return crt, key
}

// WritePEM writes one PEM block, mode 0600.
func WritePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// APIServer is a running kube-apiserver over its own etcd.
type APIServer struct {
	// URL is https://127.0.0.1:<port>.
	URL string
	// CA signed the serving certificate and is the client CA.
	CA *CA
	// Dir holds the certificates; tests may write more there.
	Dir                             string
	CAFile, ServingCert, ServingKey string
}

// StartAPIServer starts etcd and kube-apiserver with client-certificate
// authentication, the authorization modes given (e.g. "Node,RBAC") and any
// extra flags. The server may still be starting when it returns: wait for
// it with a client.
func StartAPIServer(t testing.TB, authorizationMode string, extra ...string) *APIServer {
	t.Helper()
	apiserverBin, etcdBin := Binaries(t)
	s := &APIServer{Dir: t.TempDir(), CA: NewCA(t, "kubernetes")}
	s.CAFile = filepath.Join(s.Dir, "ca.crt")
	WritePEM(t, s.CAFile, "CERTIFICATE", s.CA.Cert.Raw)
	s.ServingCert, s.ServingKey = s.CA.IssueFiles(t, s.Dir, "apiserver", pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, err := x509.MarshalECPrivateKey(saKey)
	if err != nil {
		t.Fatal(err)
	}
	saFile := filepath.Join(s.Dir, "sa.key")
	WritePEM(t, saFile, "EC PRIVATE KEY", saDER)

	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", FreePort(t))
	Start(t, etcdBin, "--data-dir", filepath.Join(s.Dir, "etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default="+peerURL,
		"--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", FreePort(t)))
	apiPort := FreePort(t)
	s.URL = fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	args := []string{"--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(apiPort), "--tls-cert-file", s.ServingCert, "--tls-private-key-file", s.ServingKey,
		"--client-ca-file", s.CAFile, "--service-account-key-file", saFile, "--service-account-signing-key-file", saFile,
		"--service-account-issuer", "https://kubernetes.default.svc", "--authorization-mode", authorizationMode,
		"--service-cluster-ip-range", "10.96.0.0/16", "--endpoint-reconciler-type", "none"}
	Start(t, apiserverBin, append(args, extra...)...)
	return s
}

// CAKeyFile writes the CA's key next to CAFile, as ca.key (mode 0600), for
// a test that signs with it.
func (s *APIServer) CAKeyFile(t testing.TB) string {
	t.Helper()
	der, err := x509.MarshalECPrivateKey(s.CA.Key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir, "ca.key")
	WritePEM(t, path, "EC PRIVATE KEY", der)
	return path
}

// Wait polls cond every 200 ms until it returns nil, or fails the test
// after timeout with the last error.
func Wait(t testing.TB, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = cond(); last == nil {
			return
		}
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}
