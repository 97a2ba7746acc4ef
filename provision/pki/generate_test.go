package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"regexp"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"kubeup.dev/kubeup/test/golden"
)

// TestGoldenPEM pins whole PEMs. Key material and serials come from the
// seeded Options.Rand; ECDSA signatures come from Go's global randomness,
// which cryptotest.SetGlobalRandom pins (a different Go version may sign
// differently: then review and -update).
func TestGoldenPEM(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	b := mustGenerate(t, testCluster(3), testOptions(1))
	for _, tc := range []struct{ id, file string }{
		{KubernetesCA, "kubernetes-ca.crt"},
		{"apiserver/master-0", "apiserver-master-0.crt"},
		{"etcd-peer/master-1", "etcd-peer-master-1.crt"},
		{"kubeup-agent", "kubeup-agent.crt"},
	} {
		cert, _, ok := b.Cert(tc.id)
		if !ok {
			t.Fatalf("no %s", tc.id)
		}
		golden.Assert(t, tc.file, cert)
	}
	pub, key, _ := b.Cert(ServiceAccount)
	golden.Assert(t, "service-account.pub", pub)
	_, key, _ = b.Cert("kube-proxy") // one key, to pin the key derivation
	golden.Assert(t, "kube-proxy.key", key)
	kc, err := b.Kubeconfig("controller-manager", "https://127.0.0.1:6443", false)
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "controller-manager.kubeconfig", kc)
	kc, err = BootstrapKubeconfig("https://10.0.0.10:6443", b.CAPEM(KubernetesCA), b.BootstrapToken.String())
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "bootstrap-kubelet.kubeconfig", kc)
}

// pems collects every PEM and secret of b by ID.
func pems(b *Bundle) map[string][]byte {
	out := map[string][]byte{"encryption-key": b.EncryptionKey, "bootstrap-token": []byte(b.BootstrapToken)}
	for _, s := range b.Specs {
		cert, key, _ := b.Cert(s.ID())
		out[s.ID()+".crt"], out[s.ID()+".key"] = cert, key
	}
	return out
}

// TestSetGlobalRandomReproducible checks what the golden test relies on:
// with the global randomness pinned, whole bundles are byte-identical.
func TestSetGlobalRandomReproducible(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 7)
	a := pems(mustGenerate(t, testCluster(3), testOptions(7)))
	cryptotest.SetGlobalRandom(t, 7)
	b := pems(mustGenerate(t, testCluster(3), testOptions(7)))
	if len(a) != len(b) {
		t.Fatalf("%d vs %d items", len(a), len(b))
	}
	for k := range a {
		if len(a[k]) == 0 || !bytes.Equal(a[k], b[k]) {
			t.Errorf("%s differs between two runs", k)
		}
	}
}

func TestDeterministicKeyMaterial(t *testing.T) {
	c := testCluster(3)
	a, b := mustGenerate(t, c, testOptions(3)), mustGenerate(t, c, testOptions(3))
	other := mustGenerate(t, c, testOptions(4))
	if !bytes.Equal(a.EncryptionKey, b.EncryptionKey) || a.BootstrapToken != b.BootstrapToken {
		t.Error("encryption key or token differ for the same seed")
	}
	if bytes.Equal(a.EncryptionKey, other.EncryptionKey) || a.BootstrapToken == other.BootstrapToken {
		t.Error("encryption key or token equal for different seeds")
	}
	for _, s := range a.Specs {
		_, ka, _ := a.Cert(s.ID())
		_, kb, _ := b.Cert(s.ID())
		_, ko, _ := other.Cert(s.ID())
		if !bytes.Equal(ka, kb) {
			t.Errorf("%s: keys differ for the same seed", s.ID())
		}
		if bytes.Equal(ka, ko) {
			t.Errorf("%s: keys equal for different seeds", s.ID())
		}
		if s.Kind == KindKeyPair {
			continue
		}
		ca, _ := a.Certificate(s.ID())
		cb, _ := b.Certificate(s.ID())
		// Everything but the (randomised) signature is the same.
		if !bytes.Equal(ca.RawTBSCertificate, cb.RawTBSCertificate) {
			t.Errorf("%s: certificate contents differ for the same seed", s.ID())
		}
		if ca.SerialNumber.BitLen() > 128 || ca.SerialNumber.Sign() <= 0 {
			t.Errorf("%s: serial %v is not a positive 128-bit number", s.ID(), ca.SerialNumber)
		}
	}
}

func TestValidityAndExtensions(t *testing.T) {
	o := testOptions(5)
	o.CALifetime = 5 * 365 * 24 * time.Hour
	o.CertLifetime = 90 * 24 * time.Hour
	b := mustGenerate(t, testCluster(1), o)
	notBefore := clock.Add(-5 * time.Minute)
	for _, s := range b.Specs {
		if s.Kind == KindKeyPair {
			_, keyPEM, _ := b.Cert(s.ID())
			if block, _ := pem.Decode(keyPEM); block == nil || block.Type != "EC PRIVATE KEY" {
				t.Errorf("%s: key is not an EC PRIVATE KEY PEM", s.ID())
			}
			continue
		}
		c, _ := b.Certificate(s.ID())
		lifetime := o.CertLifetime
		if s.Kind == KindCA {
			lifetime = o.CALifetime
		}
		if !c.NotBefore.Equal(notBefore) || !c.NotAfter.Equal(notBefore.Add(lifetime)) {
			t.Errorf("%s: valid %v to %v, want %v to %v", s.ID(), c.NotBefore, c.NotAfter, notBefore, notBefore.Add(lifetime))
		}
		if _, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || c.SignatureAlgorithm != x509.ECDSAWithSHA256 {
			t.Errorf("%s: key %T, signature %v", s.ID(), c.PublicKey, c.SignatureAlgorithm)
		}
		if len(c.SubjectKeyId) == 0 {
			t.Errorf("%s: no subject key id", s.ID())
		}
		if s.Kind == KindCA {
			if !c.IsCA || !c.BasicConstraintsValid || c.KeyUsage != x509.KeyUsageCertSign|x509.KeyUsageCRLSign|x509.KeyUsageDigitalSignature {
				t.Errorf("%s: CA %v, key usage %b", s.ID(), c.IsCA, c.KeyUsage)
			}
			continue
		}
		ca, _ := b.Certificate(s.CA)
		if c.IsCA || c.KeyUsage != x509.KeyUsageDigitalSignature || !bytes.Equal(c.AuthorityKeyId, ca.SubjectKeyId) {
			t.Errorf("%s: CA %v, key usage %b, authority key id %x (CA's %x)", s.ID(), c.IsCA, c.KeyUsage, c.AuthorityKeyId, ca.SubjectKeyId)
		}
		if err := c.CheckSignatureFrom(ca); err != nil {
			t.Errorf("%s: %v", s.ID(), err)
		}
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	o := testOptions(6)
	o.CALifetime = 24 * time.Hour
	o.CertLifetime = 48 * time.Hour
	b := mustGenerate(t, testCluster(1), o)
	ca, _ := b.Certificate(KubernetesCA)
	leaf, _ := b.Certificate("admin")
	if !leaf.NotAfter.Equal(ca.NotAfter) {
		t.Errorf("leaf expires %v, CA %v", leaf.NotAfter, ca.NotAfter)
	}
	if _, err := Generate(testCluster(1), Options{CertLifetime: -time.Hour}); err == nil {
		t.Error("negative lifetime accepted")
	}
}

// A short (test) lifetime is not shortened by the back-dating: a 30m leaf
// is valid for 30 minutes from its issue, as the controller-manager signs.
func TestShortLeafLifetime(t *testing.T) {
	o := testOptions(7)
	o.CertLifetime = 30 * time.Minute
	b := mustGenerate(t, testCluster(1), o)
	for _, id := range []string{"admin", "apiserver/master-0", "etcd-peer/master-0"} {
		c, _ := b.Certificate(id)
		if want := clock.Add(-ClockSkew); !c.NotBefore.Equal(want) {
			t.Errorf("%s: NotBefore %v, want %v", id, c.NotBefore, want)
		}
		if want := clock.Add(30 * time.Minute); !c.NotAfter.Equal(want) {
			t.Errorf("%s: NotAfter %v, want %v", id, c.NotAfter, want)
		}
	}
	for _, tc := range []struct {
		lifetime time.Duration
		want     time.Time
	}{
		{20 * time.Minute, clock.Add(20 * time.Minute)},
		{ShortLifetime - time.Second, clock.Add(ShortLifetime - time.Second)},
		{ShortLifetime, clock.Add(ShortLifetime - ClockSkew)},
		{DefaultCertLifetime, clock.Add(DefaultCertLifetime - ClockSkew)},
	} {
		if got := LeafNotAfter(clock.Add(300*time.Millisecond), tc.lifetime); !got.Equal(tc.want) {
			t.Errorf("LeafNotAfter(%v) = %v, want %v", tc.lifetime, got, tc.want)
		}
	}
}

func TestKeyDerivation(t *testing.T) {
	n := new(big.Int).Sub(ecdsaN(), big.NewInt(1))
	for _, tc := range []struct {
		in   []byte
		want *big.Int
	}{
		{bytes.Repeat([]byte{0}, 40), big.NewInt(1)},
		{new(big.Int).Sub(n, big.NewInt(1)).FillBytes(make([]byte, 40)), n}, // (N-2) mod (N-1) + 1 = N-1
		{n.FillBytes(make([]byte, 40)), big.NewInt(1)},                      // (N-1) mod (N-1) + 1 = 1
	} {
		key, err := newKey(bytes.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := key.Bytes()
		if got := new(big.Int).SetBytes(raw); got.Cmp(tc.want) != 0 {
			t.Errorf("key from %x = %v, want %v", tc.in, got, tc.want)
		}
	}
	if _, err := newKey(bytes.NewReader(make([]byte, 39))); err == nil {
		t.Error("short read accepted")
	}
}

func ecdsaN() *big.Int {
	n, _ := new(big.Int).SetString("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551", 16)
	return n
}

func TestBootstrapToken(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)
	seen := map[BootstrapToken]bool{}
	for seed := range uint64(50) {
		tok, err := newBootstrapToken(seeded(seed))
		if err != nil {
			t.Fatal(err)
		}
		if !re.MatchString(string(tok)) || tok.ID()+"."+tok.Secret() != string(tok) || len(tok.ID()) != 6 || len(tok.Secret()) != 16 {
			t.Errorf("token %q, ID %q, secret %q", tok, tok.ID(), tok.Secret())
		}
		seen[tok] = true
	}
	if len(seen) != 50 {
		t.Errorf("%d distinct tokens from 50 seeds", len(seen))
	}
	for _, bad := range []string{"", "abcdef.0123456789abcdeF", "abcde.0123456789abcdef0", "abcdef0123456789abcdef", "abcdef.0123456789abcdef\n"} {
		if _, err := ParseBootstrapToken(bad); err == nil {
			t.Errorf("ParseBootstrapToken(%q) accepted", bad)
		}
	}
	if tok, err := ParseBootstrapToken("abcdef.0123456789abcdef"); err != nil || tok.ID() != "abcdef" || tok.Secret() != "0123456789abcdef" {
		t.Errorf("valid token: %q %v", tok, err)
	}
	if strings.Contains(BootstrapToken("abcdef.0123456789abcdef").String(), "\n") {
		t.Error("newline")
	}
}
