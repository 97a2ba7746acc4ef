package addonmanager

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"slices"
	"strings"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"

	"kubeup.dev/kubeup/components"
)

// ReviewNodeCredentialCSR decides about a request by which a node's agent
// renews one of the certificates kubeup issued to nodes (creds, which are
// components.NodeCredentials), or asks for its first one: it approves
// exactly those, asked by an agent (user components.AgentUser in
// components.AgentGroup, that is with the agent's current certificate) or
// by a node joining with the cluster's bootstrap token (in
// components.BootstrapGroup), for a P-256 key the request is signed with,
// with the credential's subject, names and usages and nothing more. Other
// requests to kubernetes.io/kube-apiserver-client are not its business
// (left to an administrator); any other request to kubeup's own signer is
// denied.
func ReviewNodeCredentialCSR(csr *certificatesv1.CertificateSigningRequest, creds []components.NodeCredential) Decision {
	signer := csr.Spec.SignerName
	if !slices.ContainsFunc(creds, func(c components.NodeCredential) bool { return c.SignerName == signer }) {
		return Decision{Ignore, fmt.Sprintf("signer %q signs no node credential", signer)}
	}
	if decided(csr) {
		return Decision{Ignore, "already decided"}
	}
	user := csr.Spec.Username
	agent := user == components.AgentUser && slices.Contains(csr.Spec.Groups, components.AgentGroup)
	// A node joining with the bootstrap token (a metal node's seed carries
	// no keys: its agent asks for its first ones, as its kubelet does).
	joining := strings.HasPrefix(user, bootstrapUserPrefix) && slices.Contains(csr.Spec.Groups, components.BootstrapGroup)
	if !agent && !joining {
		if signer == components.AgentSignerName {
			return Decision{Deny, fmt.Sprintf("requested by %q: only kubeup's agents and joining nodes ask signer %s", user, signer)}
		}
		return Decision{Ignore, fmt.Sprintf("requested by %q, not by an agent: left to an administrator", user)}
	}
	cred, _, err := matchNodeCredential(csr, creds)
	if err != nil {
		return Decision{Deny, err.Error()}
	}
	if joining {
		return Decision{Approve, fmt.Sprintf("a node joining with the bootstrap token asks for the node credential %s", cred.CertFile)}
	}
	return Decision{Approve, fmt.Sprintf("an agent renews the node credential %s", cred.CertFile)}
}

// matchNodeCredential returns the credential csr asks for exactly, and its
// parsed request, or why it is none.
func matchNodeCredential(csr *certificatesv1.CertificateSigningRequest, creds []components.NodeCredential) (components.NodeCredential, *x509.CertificateRequest, error) {
	none := components.NodeCredential{}
	req, err := parseCSR(csr.Spec.Request)
	if err != nil {
		return none, nil, fmt.Errorf("request: %w", err)
	}
	if k, ok := req.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		return none, nil, fmt.Errorf("key %T is not the P-256 key agents make", req.PublicKey)
	}
	i := slices.IndexFunc(creds, func(c components.NodeCredential) bool {
		return c.SignerName == csr.Spec.SignerName && c.CommonName == req.Subject.CommonName
	})
	if i < 0 {
		return none, nil, fmt.Errorf("CN %q from signer %s is no node credential", req.Subject.CommonName, csr.Spec.SignerName)
	}
	c := creds[i]
	var ips []string
	for _, ip := range req.IPAddresses {
		ips = append(ips, ip.String())
	}
	var extra []string
	for _, a := range req.Subject.Names {
		if !a.Type.Equal(oidCommonName) && !a.Type.Equal(oidOrganization) {
			extra = append(extra, a.Type.String())
		}
	}
	switch {
	case !sameSet(req.Subject.Organization, c.Organization):
		return none, nil, fmt.Errorf("subject O %q is not %q", req.Subject.Organization, c.Organization)
	case len(extra) > 0:
		return none, nil, fmt.Errorf("subject has attributes %v besides CN and O", extra)
	case !sameSet(req.DNSNames, c.DNSNames) || !sameSet(ips, c.IPAddresses):
		return none, nil, fmt.Errorf("names %q %q are not %q %q", req.DNSNames, ips, c.DNSNames, c.IPAddresses)
	case len(req.EmailAddresses) > 0 || len(req.URIs) > 0:
		return none, nil, errors.New("email or URI names are not allowed")
	case hasUnexpectedExtensions(req):
		return none, nil, errors.New("the request carries extensions besides its names")
	case !sameSet(csr.Spec.Usages, c.Usages):
		return none, nil, fmt.Errorf("usages %q are not %q", csr.Spec.Usages, c.Usages)
	}
	return c, req, nil
}

var (
	oidCommonName      = asn1.ObjectIdentifier{2, 5, 4, 3}
	oidOrganization    = asn1.ObjectIdentifier{2, 5, 4, 10}
	oidSubjectAltNames = asn1.ObjectIdentifier{2, 5, 29, 17}
)

// hasUnexpectedExtensions: a request may carry its names (subjectAltName),
// nothing else a signer could be tempted to copy.
func hasUnexpectedExtensions(req *x509.CertificateRequest) bool {
	for _, e := range req.Extensions {
		if !e.Id.Equal(oidSubjectAltNames) {
			return true
		}
	}
	return false
}

// sameSet: the same elements, in any order.
func sameSet[T ~string](a, b []T) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// bootstrapUserPrefix starts the user name of a bootstrap token
// (system:bootstrap:<token id>).
const bootstrapUserPrefix = "system:bootstrap:"

// ErrSignRefused: the request is not one kubeup's signer signs, whoever
// approved it.
var ErrSignRefused = errors.New("refused")

// Signer signs the approved requests of components.AgentSignerName with
// the cluster CA, which the addon manager reads from CertFile and KeyFile
// at each signing.
type Signer struct {
	CertFile, KeyFile string
	// Duration is the longest validity signed; a request may ask for
	// less, down to minSignDuration.
	Duration time.Duration
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// Signing policy, kube-controller-manager's: the minimum a request may ask
// for, the back-dating of NotBefore, and the lifetime under which NotAfter
// is not shortened by it.
const (
	minSignDuration = 10 * time.Minute
	signBackdate    = 5 * time.Minute
	signShort       = 8 * time.Hour
)

// needsSigning: an approved request to kubeup's own signer that has no
// certificate and did not fail.
func needsSigning(csr *certificatesv1.CertificateSigningRequest) bool {
	if csr.Spec.SignerName != components.AgentSignerName || len(csr.Status.Certificate) > 0 {
		return false
	}
	approved := false
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return false
		case certificatesv1.CertificateApproved:
			approved = c.Status == corev1.ConditionTrue
		}
	}
	return approved
}

// Sign issues the certificate of an approved request, after checking it
// again against creds: an administrator's approval of something else does
// not make kubeup's signer sign it. It returns the PEM certificate.
func (s *Signer) Sign(csr *certificatesv1.CertificateSigningRequest, creds []components.NodeCredential) ([]byte, error) {
	if _, _, err := matchNodeCredential(csr, creds); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignRefused, err)
	}
	req, _ := parseCSR(csr.Spec.Request) // matchNodeCredential parsed it
	ca, key, err := s.loadCA()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	ttl := s.Duration
	if e := csr.Spec.ExpirationSeconds; e != nil {
		ttl = min(max(time.Duration(*e)*time.Second, minSignDuration), s.Duration)
	}
	notAfter := now.Add(ttl)
	if ttl >= signShort {
		notAfter = notAfter.Add(-signBackdate)
	}
	notAfter = minTime(notAfter, ca.NotAfter)
	if !notAfter.After(now) {
		return nil, fmt.Errorf("the CA expired at %s", ca.NotAfter.Format(time.RFC3339))
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               pkix.Name{CommonName: req.Subject.CommonName, Organization: req.Subject.Organization},
		NotBefore:             now.Add(-signBackdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		DNSNames:              req.DNSNames,
		IPAddresses:           slices.Clone(req.IPAddresses),
	}
	for _, u := range csr.Spec.Usages {
		switch u {
		case certificatesv1.UsageServerAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		case certificatesv1.UsageClientAuth:
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, req.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

func (s *Signer) loadCA() (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(s.CertFile)
	if err != nil {
		return nil, nil, fmt.Errorf("signing CA: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("signing CA %s: no PEM certificate", s.CertFile)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("signing CA %s: %w", s.CertFile, err)
	}
	keyPEM, err := os.ReadFile(s.KeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("signing key: %w", err)
	}
	if block, _ = pem.Decode(keyPEM); block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, nil, fmt.Errorf("signing key %s: no PEM EC private key", s.KeyFile)
	}
	key, err := x509.ParseECPrivateKey(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("signing key %s: %w", s.KeyFile, err)
	}
	if !key.PublicKey.Equal(ca.PublicKey) {
		return nil, nil, fmt.Errorf("signing key %s is not the key of %s", s.KeyFile, s.CertFile)
	}
	return ca, key, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}
