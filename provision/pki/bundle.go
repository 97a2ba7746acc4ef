package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"slices"
	"strings"
	"time"
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemECKey       = "EC PRIVATE KEY"
	pemPublicKey   = "PUBLIC KEY"
)

// EncryptionKeySize is the size of the secrets-at-rest key: AES-256, as the
// apiserver's aescbc and aesgcm providers take it (base64-encoded).
const EncryptionKeySize = 32

// Bundle is a cluster's complete PKI and credentials.
type Bundle struct {
	Cluster Cluster
	// Specs is Table(Cluster).
	Specs []Spec
	// EncryptionKey is the apiserver's EncryptionConfiguration key.
	EncryptionKey []byte
	// BootstrapToken lets nodes' kubelets ask for their certificates.
	BootstrapToken BootstrapToken

	creds map[string]*credential // by Spec.ID()
}

// credential is one row's material. For the service-account key pair, cert
// is nil and certPEM is the public key.
type credential struct {
	cert    *x509.Certificate
	key     *ecdsa.PrivateKey
	certPEM []byte
	keyPEM  []byte
}

// Spec returns the row with the given ID.
func (b *Bundle) Spec(id string) (Spec, bool) {
	for _, s := range b.Specs {
		if s.ID() == id {
			return s, true
		}
	}
	return Spec{}, false
}

// CAPEM returns the PEM certificate of CA name (KubernetesCA, EtcdCA,
// FrontProxyCA), or nil if there is no such CA.
func (b *Bundle) CAPEM(name string) []byte {
	s, ok := b.Spec(name)
	if !ok || s.Kind != KindCA {
		return nil
	}
	return bytes.Clone(b.creds[name].certPEM)
}

// Cert returns the PEM certificate and private key of row id (see Spec.ID,
// e.g. "apiserver/master-0"). For ServiceAccount, certPEM is the public key.
func (b *Bundle) Cert(id string) (certPEM, keyPEM []byte, ok bool) {
	c, ok := b.creds[id]
	if !ok {
		return nil, nil, false
	}
	return bytes.Clone(c.certPEM), bytes.Clone(c.keyPEM), true
}

// Certificate returns the parsed certificate of row id.
func (b *Bundle) Certificate(id string) (*x509.Certificate, bool) {
	c, ok := b.creds[id]
	if !ok || c.cert == nil {
		return nil, false
	}
	return c.cert, true
}

// File is one file to put on a machine.
type File struct {
	Path    string
	Mode    os.FileMode
	Content []byte
}

// MachineFiles returns every certificate, key and CA file that a machine of
// kind place named machine needs, sorted by path. Per-master rows go only to
// their own master. PlaceHost has no machine files: the host keeps
// everything in the state directory (Save).
func (b *Bundle) MachineFiles(place Place, machine string) []File {
	var files []File
	for _, s := range b.Specs {
		c := b.creds[s.ID()]
		if c == nil {
			continue
		}
		if s.CertFile != "" && s.onMachine(s.Where, place, machine) {
			files = append(files, File{Path: s.CertFile, Mode: 0o644, Content: bytes.Clone(c.certPEM)})
		}
		if s.KeyFile != "" && s.onMachine(s.KeyWhere, place, machine) {
			files = append(files, File{Path: s.KeyFile, Mode: 0o600, Content: bytes.Clone(c.keyPEM)})
		}
	}
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return files
}

// Generate issues a complete new bundle for c.
func Generate(c Cluster, o Options) (*Bundle, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("generate pki: invalid cluster: %w", err)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("generate pki: invalid options: %w", err)
	}
	o = o.withDefaults()
	b := &Bundle{Cluster: c, Specs: Table(c), creds: map[string]*credential{}}
	if err := b.fill(o, nil); err != nil {
		return nil, fmt.Errorf("generate pki: %w", err)
	}
	return b, nil
}

// fill issues every row of b.Specs that keep does not accept (keep nil:
// every row), CAs before the leaves they sign, then draws the encryption key
// and the bootstrap token if they are unset. Randomness is drawn in table
// order.
func (b *Bundle) fill(o Options, keep func(s Spec) bool) error {
	now := o.Now()
	for _, s := range b.Specs {
		if keep != nil && keep(s) {
			continue
		}
		var (
			c   *credential
			err error
		)
		switch s.Kind {
		case KindCA, KindCert:
			var ca *credential
			if s.Kind == KindCert {
				if ca = b.creds[s.CA]; ca == nil || ca.cert == nil {
					return fmt.Errorf("issue %s: CA %s is missing", s.ID(), s.CA)
				}
			}
			c, err = issue(s, ca, o, now)
		case KindKeyPair:
			c, err = newKeyPair(o.Rand)
		default:
			err = fmt.Errorf("unknown kind %q", s.Kind)
		}
		if err != nil {
			return fmt.Errorf("issue %s: %w", s.ID(), err)
		}
		b.creds[s.ID()] = c
	}
	if b.EncryptionKey == nil {
		b.EncryptionKey = make([]byte, EncryptionKeySize)
		if _, err := io.ReadFull(o.Rand, b.EncryptionKey); err != nil {
			return fmt.Errorf("draw encryption key: %w", err)
		}
	}
	if b.BootstrapToken == "" {
		t, err := newBootstrapToken(o.Rand)
		if err != nil {
			return fmt.Errorf("draw bootstrap token: %w", err)
		}
		b.BootstrapToken = t
	}
	return nil
}

// newKey derives a P-256 key from 40 bytes of r (8 more than the order's
// size, so the reduction's bias is negligible). ecdsa.GenerateKey cannot be
// used: since Go 1.26 it ignores its reader.
func newKey(r io.Reader) (*ecdsa.PrivateKey, error) {
	buf := make([]byte, 40)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read key material: %w", err)
	}
	curve := elliptic.P256()
	nMinus1 := new(big.Int).Sub(curve.Params().N, big.NewInt(1))
	d := new(big.Int).SetBytes(buf)
	d.Mod(d, nMinus1).Add(d, big.NewInt(1)) // in [1, N-1]
	key, err := ecdsa.ParseRawPrivateKey(curve, d.FillBytes(make([]byte, 32)))
	if err != nil {
		return nil, fmt.Errorf("make key: %w", err)
	}
	return key, nil
}

func newSerial(r io.Reader) (*big.Int, error) {
	buf := make([]byte, 16)
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, fmt.Errorf("read serial number: %w", err)
	}
	n := new(big.Int).SetBytes(buf)
	if n.Sign() == 0 {
		n.SetInt64(1) // serial numbers must be positive
	}
	return n, nil
}

// subjectKeyID is RFC 7093 section 2 method 1: the leftmost 160 bits of the
// SHA-256 hash of the subjectPublicKey.
func subjectKeyID(pub *ecdsa.PublicKey) ([]byte, error) {
	raw, err := pub.Bytes()
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(raw)
	return sum[:20], nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemECKey, Bytes: der}), nil
}

func newKeyPair(r io.Reader) (*credential, error) {
	key, err := newKey(r)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return &credential{key: key, keyPEM: keyPEM,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: pemPublicKey, Bytes: der})}, nil
}

// issue makes the certificate of s, self-signed when ca is nil.
func issue(s Spec, ca *credential, o Options, now time.Time) (*credential, error) {
	key, err := newKey(o.Rand)
	if err != nil {
		return nil, err
	}
	serial, err := newSerial(o.Rand)
	if err != nil {
		return nil, err
	}
	ski, err := subjectKeyID(&key.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("subject key id: %w", err)
	}
	notBefore := now.Add(-ClockSkew).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: s.CommonName, Organization: s.Organization},
		NotBefore:    notBefore,
		SubjectKeyId: ski,
		DNSNames:     s.DNSNames,
		IPAddresses:  s.IPAddresses,
		ExtKeyUsage:  s.Usages,
	}
	parent, signer := tmpl, key
	if ca == nil {
		tmpl.NotAfter = notBefore.Add(o.CALifetime)
		tmpl.IsCA = true
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	} else {
		tmpl.NotAfter = LeafNotAfter(now, o.CertLifetime)
		// A leaf must not outlive its CA: verifiers would reject it then anyway.
		if tmpl.NotAfter.After(ca.cert.NotAfter) {
			tmpl.NotAfter = ca.cert.NotAfter
		}
		tmpl.BasicConstraintsValid = true
		tmpl.KeyUsage = x509.KeyUsageDigitalSignature
		parent, signer = ca.cert, ca.key
	}
	// Signing takes randomness from Go's global source whatever reader is
	// passed (Go 1.26), so pass that one explicitly.
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, signer)
	if err != nil {
		return nil, fmt.Errorf("create certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse new certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &credential{cert: cert, key: key, keyPEM: keyPEM,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: der})}, nil
}

// ShortLifetime: a leaf lifetime below it is not shortened by the back-dated
// ClockSkew, so that it is valid for its whole lifetime from the moment it
// is issued (kube-controller-manager's signer does the same, with the same
// 5 minutes and 8 hours, so that leaves it signs from CSRs and those kubeup
// issues expire alike).
const ShortLifetime = 8 * time.Hour

// LeafNotAfter is the end of validity of a leaf issued at now with the given
// lifetime: NotBefore (now-ClockSkew) plus the lifetime, or now plus the
// lifetime for lifetimes under ShortLifetime.
func LeafNotAfter(now time.Time, lifetime time.Duration) time.Time {
	notBefore := now.Add(-ClockSkew).UTC().Truncate(time.Second)
	if lifetime < ShortLifetime {
		return notBefore.Add(ClockSkew + lifetime)
	}
	return notBefore.Add(lifetime)
}

// errStale says why a stored leaf no longer fits its row.
var errStale = errors.New("stale")

// fits reports whether stored credential c still satisfies row s, signed by
// ca, at time now; it returns why not.
func fits(s Spec, c, ca *credential, now time.Time, renewBefore time.Duration) error {
	cert := c.cert
	stale := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", errStale, fmt.Sprintf(format, args...))
	}
	switch {
	case cert.Subject.CommonName != s.CommonName:
		return stale("common name %q, want %q", cert.Subject.CommonName, s.CommonName)
	case !slices.Equal(cert.Subject.Organization, s.Organization):
		return stale("organization %q, want %q", cert.Subject.Organization, s.Organization)
	case !slices.Equal(cert.DNSNames, s.DNSNames):
		return stale("DNS names %q, want %q", cert.DNSNames, s.DNSNames)
	case !slices.EqualFunc(cert.IPAddresses, s.IPAddresses, func(a, b net.IP) bool { return a.Equal(b) }):
		return stale("IP addresses %v, want %v", cert.IPAddresses, s.IPAddresses)
	case !slices.Equal(cert.ExtKeyUsage, s.Usages):
		return stale("extended key usages %v, want %v", cert.ExtKeyUsage, s.Usages)
	case !bytes.Equal(cert.RawIssuer, ca.cert.RawSubject) || cert.CheckSignatureFrom(ca.cert) != nil:
		return stale("not signed by the current %s", s.CA)
	case now.Add(renewBefore).After(cert.NotAfter):
		return stale("expires %s", cert.NotAfter.Format(time.RFC3339))
	case now.Before(cert.NotBefore):
		return stale("not valid before %s", cert.NotBefore.Format(time.RFC3339))
	}
	return nil
}

// renewBefore is how long before expiry LoadOrGenerate reissues a leaf.
func renewBefore(certLifetime time.Duration) time.Duration {
	return min(30*24*time.Hour, certLifetime/3)
}
