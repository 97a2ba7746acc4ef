package agent

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/provision/pki"
)

// machinePKI writes the PKI files kubeup's table gives a machine (place,
// name) into a temporary root, with leaves of the given lifetime issued at
// issued, and returns the PKI directory and the bundle.
func machinePKI(t *testing.T, place pki.Place, machine string, issued time.Time, lifetime time.Duration) (string, *pki.Bundle) {
	t.Helper()
	b, err := pki.Generate(pki.Cluster{
		Name: "demo", DNSDomain: "cluster.local", APIServerServiceIP: net.ParseIP("10.96.0.1"),
		Masters: []pki.Machine{{Name: "master-0", IP: net.ParseIP("10.77.0.10")}},
	}, pki.Options{CertLifetime: lifetime, Now: func() time.Time { return issued }})
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	for _, f := range b.MachineFiles(place, machine) {
		path := filepath.Join(root, f.Path)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, f.Content, f.Mode); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(root, pki.Dir), b
}

func newTestRenewal(dir, machine string, kube KubeAPI, now func() time.Time, requests ...agentconfig.RenewalRequest) *certRenewal {
	k := newKubeClient(filepath.Join(dir, "no-kubeconfig"), slog.New(slog.DiscardHandler))
	if kube != nil {
		k = newReadyKubeClient(kube)
	}
	r := newCertRenewal(agentconfig.Renewal{Lifetime: metav1.Duration{Duration: 30 * time.Minute}, Dir: dir, Requests: requests},
		machine, k, slog.New(slog.DiscardHandler), now)
	r.pollCSR = 10 * time.Millisecond
	return r
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, ok := readPEMCertificates(path)
	if !ok || len(certs) != 1 {
		t.Fatalf("%s: %d certificates", path, len(certs))
	}
	return certs[0]
}

// leafFiles are the leaf certificate files under dir.
func leafFiles(t *testing.T, dir string) []string {
	t.Helper()
	p, err := readPKIDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range p.leaves {
		out = append(out, l.path)
	}
	return out
}

// sameIdentity: what a renewal must keep.
func sameIdentity(t *testing.T, path string, old, cur *x509.Certificate) {
	t.Helper()
	switch {
	case !bytes.Equal(old.RawSubject, cur.RawSubject):
		t.Errorf("%s: subject %q, was %q", path, cur.Subject, old.Subject)
	case !slices.Equal(old.DNSNames, cur.DNSNames) || !slices.EqualFunc(old.IPAddresses, cur.IPAddresses, net.IP.Equal):
		t.Errorf("%s: names %v %v, were %v %v", path, cur.DNSNames, cur.IPAddresses, old.DNSNames, old.IPAddresses)
	case !slices.Equal(old.ExtKeyUsage, cur.ExtKeyUsage) || old.KeyUsage != cur.KeyUsage || cur.IsCA:
		t.Errorf("%s: usages %v %b, were %v %b", path, cur.ExtKeyUsage, cur.KeyUsage, old.ExtKeyUsage, old.KeyUsage)
	case !bytes.Equal(old.SubjectKeyId, cur.SubjectKeyId) || !bytes.Equal(old.AuthorityKeyId, cur.AuthorityKeyId):
		t.Errorf("%s: key ids changed", path)
	case old.SerialNumber.Cmp(cur.SerialNumber) == 0:
		t.Errorf("%s: same serial number", path)
	}
}

// A master holds every CA key: every leaf in its PKI directory is re-issued
// there, with its identity and key, for the configured lifetime.
func TestRenewalRenewsEveryMasterLeafLocally(t *testing.T) {
	t.Parallel()
	issued := time.Now().Truncate(time.Second)
	dir, _ := machinePKI(t, pki.PlaceMaster, "master-0", issued, 30*time.Minute)
	leaves := leafFiles(t, dir)
	if len(leaves) != 16 {
		t.Fatalf("%d leaves on a master, want 16: %q", len(leaves), leaves)
	}
	old := map[string]*x509.Certificate{}
	oldKeys := map[string][]byte{}
	for _, l := range leaves {
		old[l] = readCert(t, l)
		oldKeys[l], _ = os.ReadFile(strings.TrimSuffix(l, ".crt") + ".key")
	}

	// Just issued: nothing is due. A 30m leaf is valid for 35 minutes (5
	// back-dated): the next is due when a third of that and up to a tenth
	// more is left, 14.8 to 18.3 minutes after the issue.
	now := issued
	r := newTestRenewal(dir, "master-0", nil, func() time.Time { return now })
	res, next := r.pass(context.Background(), false)
	if len(res) != len(leaves) || slices.ContainsFunc(res, func(c CertificateRenewal) bool { return c.Renewed || c.Method != renewLocal }) {
		t.Fatalf("fresh certificates: %+v", res)
	}
	if next.Before(issued.Add(14*time.Minute+48*time.Second)) || next.After(issued.Add(18*time.Minute+20*time.Second)) {
		t.Errorf("next renewal %v after the issue, want 14m48s to 18m20s", next.Sub(issued))
	}

	// 21 minutes later every one is due.
	now = issued.Add(21 * time.Minute)
	res, _ = r.pass(context.Background(), false)
	if len(res) != len(leaves) {
		t.Fatalf("%d results for %d leaves", len(res), len(leaves))
	}
	for _, c := range res {
		if !c.Renewed || c.Error != "" || c.Method != renewLocal {
			t.Errorf("%s: %+v", c.Path, c)
			continue
		}
		cur := readCert(t, c.Path)
		sameIdentity(t, c.Path, old[c.Path], cur)
		if !cur.PublicKey.(*ecdsa.PublicKey).Equal(old[c.Path].PublicKey) {
			t.Errorf("%s: the key changed", c.Path)
		}
		if key, _ := os.ReadFile(strings.TrimSuffix(c.Path, ".crt") + ".key"); !bytes.Equal(key, oldKeys[c.Path]) {
			t.Errorf("%s: the key file was rewritten", c.Path)
		}
		if want := now.Add(-5 * time.Minute).Truncate(time.Second); !cur.NotBefore.Equal(want) {
			t.Errorf("%s: NotBefore %v, want %v", c.Path, cur.NotBefore, want)
		}
		if want := now.Truncate(time.Second).Add(30 * time.Minute); !cur.NotAfter.Equal(want) || !c.NotAfter.Equal(want) {
			t.Errorf("%s: NotAfter %v (reported %v), want %v", c.Path, cur.NotAfter, c.NotAfter, want)
		}
		if got := testutil.ToFloat64(r.renewals.WithLabelValues(c.Path, "success")); got != 1 {
			t.Errorf("%s: renewals{result=success} = %v", c.Path, got)
		}
	}
	// Renewed: nothing is due any more.
	if res, _ := r.pass(context.Background(), false); slices.ContainsFunc(res, func(c CertificateRenewal) bool { return c.Renewed }) {
		t.Error("renewed again right after a renewal")
	}
}

// A node holds no CA key: it renews nothing locally, only the certificates
// its configuration lists, through CSRs.
func TestRenewalNeedsTheCAKey(t *testing.T) {
	t.Parallel()
	issued := time.Now()
	dir, _ := machinePKI(t, pki.PlaceNode, "node-0", issued, 30*time.Minute)
	before := readFiles(t, dir)
	now := func() time.Time { return issued.Add(time.Hour) } // all expired
	r := newTestRenewal(dir, "node-0", nil, now)
	if res, _ := r.pass(context.Background(), true); len(res) != 0 {
		t.Errorf("a node renewed %+v", res)
	}
	// Listed, but no API client yet: tried, failed, counted; nothing written.
	proxy := filepath.Join(dir, "kube-proxy-client.crt")
	r = newTestRenewal(dir, "node-0", nil, now, agentconfig.RenewalRequest{
		CertFile: proxy, KeyFile: filepath.Join(dir, "kube-proxy-client.key"), SignerName: certificatesv1.KubeAPIServerClientSignerName})
	res, next := r.pass(context.Background(), false)
	if len(res) != 1 || res[0].Path != proxy || res[0].Renewed || res[0].Method != renewCSR || !strings.Contains(res[0].Error, "no API client") {
		t.Errorf("results %+v", res)
	}
	if got := testutil.ToFloat64(r.renewals.WithLabelValues(proxy, "failure")); got != 1 {
		t.Errorf("renewals{result=failure} = %v", got)
	}
	if !next.Equal(now().Add(renewRetry)) {
		t.Errorf("retry at %v, want in %v", next.Sub(now()), renewRetry)
	}
	if after := readFiles(t, dir); !mapsEqual(before, after) {
		t.Error("files changed")
	}
}

// The renewed certificates verify with the real openssl against their CA,
// for their purposes, at the time they were renewed.
func TestRenewedCertificatesVerifyWithOpenSSL(t *testing.T) {
	t.Parallel()
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (apt-get install openssl): skipping the check with the real tool")
	}
	issued := time.Now().Truncate(time.Second)
	dir, b := machinePKI(t, pki.PlaceMaster, "master-0", issued, 30*time.Minute)
	now := issued.Add(25 * time.Minute)
	r := newTestRenewal(dir, "master-0", nil, func() time.Time { return now })
	if res, _ := r.pass(context.Background(), false); len(res) != 16 {
		t.Fatalf("%d renewed", len(res))
	}
	local := func(p string) string { return filepath.Join(dir, strings.TrimPrefix(p, pki.Dir)) }
	purposes := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "sslserver", x509.ExtKeyUsageClientAuth: "sslclient"}
	checked := 0
	for _, s := range b.Specs {
		if s.Kind != pki.KindCert || !slices.Contains(s.Where, pki.PlaceMaster) || (s.Machine != "" && s.Machine != "master-0") {
			continue
		}
		ca, _ := b.Spec(s.CA)
		cert := readCert(t, local(s.CertFile))
		if cert.NotBefore.Before(issued.Add(time.Minute)) {
			t.Errorf("%s was not renewed", s.CertFile)
		}
		for _, u := range s.Usages {
			out, err := exec.Command(openssl, "verify", "-x509_strict", "-attime", fmt.Sprint(now.Unix()),
				"-purpose", purposes[u], "-CAfile", local(ca.CertFile), local(s.CertFile)).CombinedOutput()
			if err != nil || !strings.Contains(string(out), ": OK") {
				t.Errorf("openssl verify -purpose %s -CAfile %s %s: %v\n%s", purposes[u], ca.CertFile, s.CertFile, err, out)
			}
		}
		// The key still goes with the certificate.
		if _, err := tls.LoadX509KeyPair(local(s.CertFile), local(s.KeyFile)); err != nil {
			t.Errorf("%s: %v", s.CertFile, err)
		}
		checked++
	}
	if checked != 16 {
		t.Errorf("checked %d certificates, want 16", checked)
	}
}

func TestRenewalTime(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	cert := &x509.Certificate{NotBefore: start, NotAfter: start.Add(30 * time.Minute)}
	seen := map[time.Time]bool{}
	for i := range 20 {
		m := fmt.Sprintf("node-%d", i)
		due := renewalTime(cert, m, "/etc/kubernetes/pki/kube-proxy-client.crt")
		// A third of 30 minutes left, up to 3 minutes (a tenth) earlier.
		if due.Before(start.Add(17*time.Minute)) || due.After(start.Add(20*time.Minute)) {
			t.Errorf("%s: due %v after the start, want 17 to 20 minutes", m, due.Sub(start))
		}
		if again := renewalTime(cert, m, "/etc/kubernetes/pki/kube-proxy-client.crt"); !again.Equal(due) {
			t.Errorf("%s: due %v, then %v", m, due, again)
		}
		seen[due] = true
	}
	if len(seen) < 15 {
		t.Errorf("20 machines renew at only %d different times", len(seen))
	}
	year := &x509.Certificate{NotBefore: start, NotAfter: start.Add(365 * 24 * time.Hour)}
	if due := renewalTime(year, "master-0", "/etc/kubernetes/pki/apiserver.crt"); due.Before(start.Add(206*24*time.Hour)) || due.After(start.Add(244*24*time.Hour)) {
		t.Errorf("a year's certificate due after %v", due.Sub(start))
	}

	// The task renews at its due time, not a second before.
	issued := time.Now().Truncate(time.Second)
	ca := newTestCA(t, "kubernetes")
	dir := t.TempDir()
	certPEM, keyPEM := ca.issue(t, "kube-proxy", nil, false, issued.Add(30*time.Minute))
	path := writeFile(t, filepath.Join(dir, "kube-proxy-client.crt"), certPEM)
	writeFile(t, filepath.Join(dir, "kube-proxy-client.key"), keyPEM)
	writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem)
	caKey, _ := x509.MarshalECPrivateKey(ca.Key)
	writeFile(t, filepath.Join(dir, "ca.key"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: caKey}))
	due := renewalTime(readCert(t, path), "node-0", path)
	now := due.Add(-time.Second)
	r := newTestRenewal(dir, "node-0", nil, func() time.Time { return now })
	if res, next := r.pass(context.Background(), false); len(res) != 1 || res[0].Renewed || !next.Equal(due) {
		t.Errorf("a second early: %+v, next %v (due %v)", res, next, due)
	}
	now = due
	if res, _ := r.pass(context.Background(), false); len(res) != 1 || !res[0].Renewed {
		t.Errorf("when due: %+v", res)
	}
}

func TestReissueValidity(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "kubernetes") // valid for a day
	certPEM, _ := ca.issue(t, "kube-apiserver", nil, true, time.Now().Add(time.Hour))
	block, _ := pem.Decode(certPEM)
	leaf, _ := x509.ParseCertificate(block.Bytes)
	now := time.Now().Truncate(time.Second)
	for _, tc := range []struct {
		lifetime time.Duration
		want     time.Time
	}{
		{30 * time.Minute, now.Add(30 * time.Minute)},
		{8 * time.Hour, now.Add(8*time.Hour - 5*time.Minute)},
		{365 * 24 * time.Hour, ca.cert.NotAfter}, // never past the CA
	} {
		der, err := reissue(leaf, ca.cert, ca.Key, now, tc.lifetime)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := x509.ParseCertificate(der)
		if !c.NotAfter.Equal(tc.want) || !c.NotBefore.Equal(now.Add(-5*time.Minute)) {
			t.Errorf("lifetime %v: valid %v to %v, want to %v", tc.lifetime, c.NotBefore, c.NotAfter, tc.want)
		}
		sameIdentity(t, "apiserver", leaf, c)
	}
	if _, err := reissue(leaf, ca.cert, ca.Key, ca.cert.NotAfter.Add(time.Minute), time.Hour); err == nil {
		t.Error("re-issued under an expired CA")
	}
}

// Readers of a file being renewed see the old content or the new one,
// never a part; no temporary file is left; the mode stays.
func TestWriteFileAtomic(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "apiserver.crt")
	versions := make([][]byte, 50)
	for i := range versions {
		versions[i] = bytes.Repeat([]byte{byte('a' + i%26)}, 64<<10+i)
	}
	if err := os.WriteFile(path, versions[0], 0o640); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("read: %v", err)
				return
			}
			if !slices.ContainsFunc(versions, func(v []byte) bool { return bytes.Equal(v, data) }) {
				t.Errorf("read %d bytes that are no version written", len(data))
				return
			}
		}
	})
	for _, v := range versions[1:] {
		if err := writeFileAtomic(path, v); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("files left: %v", entries)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode())
	}
	// A failed write leaves the old file and no temporary one.
	if err := writeFileAtomic(filepath.Join(dir, "missing", "x.crt"), []byte("x")); err == nil {
		t.Error("wrote into a missing directory")
	}
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	defer os.Chmod(dir, 0o700)
	if os.Geteuid() != 0 {
		if err := writeFileAtomic(path, []byte("new")); err == nil {
			t.Error("wrote into a read-only directory")
		}
	}
	if data, _ := os.ReadFile(path); !bytes.Equal(data, versions[len(versions)-1]) {
		t.Error("a failed write changed the file")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files left after a failure: %v", entries)
	}
}

// fakeSigner plays the API server, the addon manager and the signer for
// the fake clientset: each CSR created is answered by answer.
type fakeSigner struct {
	mu    sync.Mutex
	ca    *x509.Certificate
	key   any
	csrs  []*certificatesv1.CertificateSigningRequest
	deny  bool
	other bool // sign another key than the request's
}

// clusterSigner is a fakeSigner with the bundle's cluster CA, installed in a
// new fake clientset; it returns the CA certificate too.
func clusterSigner(b *pki.Bundle) (*fakeSigner, *fake.Clientset, *x509.Certificate) {
	caCert, _ := b.Certificate(pki.KubernetesCA)
	_, caKeyPEM, _ := b.Cert(pki.KubernetesCA)
	block, _ := pem.Decode(caKeyPEM)
	caKey, _ := x509.ParseECPrivateKey(block.Bytes)
	signer := &fakeSigner{ca: caCert, key: caKey}
	client := fake.NewClientset()
	signer.install(client)
	return signer, client, caCert
}

func (f *fakeSigner) install(c *fake.Clientset) {
	c.PrependReactor("create", "certificatesigningrequests", func(a k8stesting.Action) (bool, runtime.Object, error) {
		csr := a.(k8stesting.CreateAction).GetObject().(*certificatesv1.CertificateSigningRequest)
		f.mu.Lock()
		defer f.mu.Unlock()
		f.csrs = append(f.csrs, csr.DeepCopy())
		if f.deny {
			csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue, Reason: "KubeupAutoDenied"}}
			return false, nil, nil
		}
		csr.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
		csr.Status.Certificate = f.sign(csr)
		return false, nil, nil // the tracker stores it as changed here
	})
}

func (f *fakeSigner) sign(csr *certificatesv1.CertificateSigningRequest) []byte {
	block, _ := pem.Decode(csr.Spec.Request)
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		panic(err)
	}
	pub := req.PublicKey
	if f.other {
		k, _ := ecdsa.GenerateKey(req.PublicKey.(*ecdsa.PublicKey).Curve, rand.Reader)
		pub = &k.PublicKey
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(now.UnixNano()), Subject: pkix.Name{CommonName: req.Subject.CommonName, Organization: req.Subject.Organization},
		NotBefore: now.Add(-5 * time.Minute), NotAfter: now.Add(time.Duration(*csr.Spec.ExpirationSeconds) * time.Second),
		KeyUsage: x509.KeyUsageDigitalSignature, DNSNames: req.DNSNames, IPAddresses: req.IPAddresses, BasicConstraintsValid: true,
	}
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		case certificatesv1.UsageClientAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, f.ca, pub, f.key)
	if err != nil {
		panic(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// nodeRequests are the node's renewal requests as components renders them.
func nodeRequests(dir string) []agentconfig.RenewalRequest {
	return []agentconfig.RenewalRequest{
		{CertFile: filepath.Join(dir, "kubeup-agent.crt"), KeyFile: filepath.Join(dir, "kubeup-agent.key"), SignerName: "kubeup.dev/agent"},
		{CertFile: filepath.Join(dir, "kube-proxy-client.crt"), KeyFile: filepath.Join(dir, "kube-proxy-client.key"), SignerName: certificatesv1.KubeAPIServerClientSignerName},
	}
}

// A node's agent renews its client certificates through CSRs: the same
// subject, names and usages for a new key, the configured lifetime, and the
// new key and certificate written together.
func TestRenewalThroughCSRs(t *testing.T) {
	t.Parallel()
	dir, b := machinePKI(t, pki.PlaceNode, "node-0", time.Now(), 30*time.Minute)
	signer, client, caCert := clusterSigner(b)
	r := newTestRenewal(dir, "node-0", fakeKube{client}, time.Now, nodeRequests(dir)...)
	old := map[string]*x509.Certificate{}
	for _, q := range r.cfg.Requests {
		old[q.CertFile] = readCert(t, q.CertFile)
	}

	res, _ := r.pass(context.Background(), true)
	if len(res) != 2 {
		t.Fatalf("results %+v", res)
	}
	for _, c := range res {
		if !c.Renewed || c.Method != renewCSR || c.Error != "" {
			t.Errorf("%+v", c)
		}
	}
	if len(signer.csrs) != 2 {
		t.Fatalf("%d CSRs created", len(signer.csrs))
	}
	for i, q := range r.cfg.Requests {
		csr := signer.csrs[slices.IndexFunc(signer.csrs, func(c *certificatesv1.CertificateSigningRequest) bool {
			return strings.Contains(c.Name, strings.TrimSuffix(filepath.Base(q.CertFile), ".crt"))
		})]
		if csr.Spec.SignerName != q.SignerName || csr.Spec.ExpirationSeconds == nil || *csr.Spec.ExpirationSeconds != 1800 ||
			!strings.HasPrefix(csr.Name, "kubeup-node-0-") {
			t.Errorf("request %d: name %q signer %q expirationSeconds %v", i, csr.Name, csr.Spec.SignerName, csr.Spec.ExpirationSeconds)
		}
		wantUsages := []certificatesv1.KeyUsage{"digital signature", "client auth"}
		if q.SignerName == "kubeup.dev/agent" {
			wantUsages = []certificatesv1.KeyUsage{"digital signature", "server auth", "client auth"}
		}
		if !slices.Equal(csr.Spec.Usages, wantUsages) {
			t.Errorf("%s: usages %q, want %q", q.CertFile, csr.Spec.Usages, wantUsages)
		}
		block, _ := pem.Decode(csr.Spec.Request)
		req, err := x509.ParseCertificateRequest(block.Bytes)
		if err != nil || req.CheckSignature() != nil {
			t.Fatalf("request: %v", err)
		}
		if !bytes.Equal(req.RawSubject, old[q.CertFile].RawSubject) || !slices.Equal(req.DNSNames, old[q.CertFile].DNSNames) ||
			!slices.EqualFunc(req.IPAddresses, old[q.CertFile].IPAddresses, net.IP.Equal) {
			t.Errorf("%s: asked for %v %v %v", q.CertFile, req.Subject, req.DNSNames, req.IPAddresses)
		}
		if req.PublicKey.(*ecdsa.PublicKey).Equal(old[q.CertFile].PublicKey) {
			t.Errorf("%s: the old key was asked for again", q.CertFile)
		}
		// On disk: the new certificate, for the new key, of the same
		// identity, from the cluster CA, for 30 minutes.
		pair, err := tls.LoadX509KeyPair(q.CertFile, q.KeyFile)
		if err != nil {
			t.Fatalf("%s: %v", q.CertFile, err)
		}
		cur, _ := x509.ParseCertificate(pair.Certificate[0])
		if !cur.PublicKey.(*ecdsa.PublicKey).Equal(req.PublicKey) || cur.CheckSignatureFrom(caCert) != nil ||
			cur.Subject.CommonName != old[q.CertFile].Subject.CommonName || cur.NotAfter.Sub(cur.NotBefore) != 35*time.Minute {
			t.Errorf("%s: %v valid %v to %v", q.CertFile, cur.Subject, cur.NotBefore, cur.NotAfter)
		}
		if fi, _ := os.Stat(q.KeyFile); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", q.KeyFile, fi.Mode())
		}
		if got := testutil.ToFloat64(r.renewals.WithLabelValues(q.CertFile, "success")); got != 1 {
			t.Errorf("%s: renewals{success} = %v", q.CertFile, got)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 5 {
		t.Errorf("%d files in the PKI directory, want 5 (no temporary file left)", len(entries))
	}

	// Denied, or signed for another key: an error, and nothing written.
	for _, bad := range []func(){func() { signer.deny = true }, func() { signer.deny, signer.other = false, true }} {
		bad()
		before := readFiles(t, dir)
		res, _ := r.pass(context.Background(), true)
		for _, c := range res {
			if c.Renewed || c.Error == "" {
				t.Errorf("%+v", c)
			}
		}
		if !mapsEqual(before, readFiles(t, dir)) {
			t.Error("a failed renewal changed files")
		}
	}
	if got := testutil.ToFloat64(r.renewals.WithLabelValues(r.cfg.Requests[0].CertFile, "failure")); got != 2 {
		t.Errorf("renewals{failure} = %v, want 2", got)
	}
}

func TestRenewEndpoint(t *testing.T) {
	dir, _ := machinePKI(t, pki.PlaceMaster, "master-0", time.Now(), time.Hour)
	td := newTestDaemon(t, nil, func(c *agentconfig.Config) {
		c.Renewal = &agentconfig.Renewal{Lifetime: metav1.Duration{Duration: time.Hour}, Dir: dir}
	})
	srv := serve(t, td)
	admin := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup})))
	user := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", []string{"monitoring"})))
	if code, _ := user.post("/v1/certs/renew", nil); code != http.StatusForbidden {
		t.Errorf("non-admin: %d", code)
	}
	if code, body := admin.post("/v1/certs/renew", nil); code != http.StatusServiceUnavailable {
		t.Errorf("task not running: %d %s", code, body)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { td.renew.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	// Run marks itself running from its own goroutine: wait for that, or
	// a loaded machine answers the request below before it (503).
	for deadline := time.Now().Add(10 * time.Second); !td.renew.running.Load(); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the renewal task did not start")
		}
	}
	code, body := admin.post("/v1/certs/renew", nil)
	var res []CertificateRenewal
	if err := json.Unmarshal([]byte(body), &res); code != 200 || err != nil {
		t.Fatalf("renew: %d %s", code, body)
	}
	if len(res) != 16 || slices.ContainsFunc(res, func(c CertificateRenewal) bool { return !c.Renewed }) {
		t.Errorf("renewed %s", body)
	}

	plain := newTestDaemon(t, nil)
	if code, _ := newClient(t, serve(t, plain), plain.pki.clientTLS(t, plain.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup}))).post("/v1/certs/renew", nil); code != http.StatusNotFound {
		t.Errorf("without renewal: %d", code)
	}
}

func readFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			data, _ := os.ReadFile(path)
			out[path] = string(data)
		}
		return err
	})
	return out
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Replacing a file owned by the writer never calls chown: the sandboxed
// agent's system call filter refuses it (EPERM), which once failed every
// renewal on a booted cluster.
func TestWriteFileAtomicNoChownForOwnFile(t *testing.T) {
	calls := 0
	orig := chown
	chown = func(f *os.File, uid, gid int) error { calls++; return orig(f, uid, gid) }
	defer func() { chown = orig }()
	path := filepath.Join(t.TempDir(), "a.crt")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := writeFileAtomic(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	if calls != 0 {
		t.Errorf("chown called %d times for a file the writer owns", calls)
	}
	if data, _ := os.ReadFile(path); string(data) != "new" {
		t.Errorf("content %q", data)
	}
}
