package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/components/agentconfig"
)

// csrTimeout bounds the wait for a request to be approved and signed; the
// next attempt makes a new request.
const csrTimeout = 5 * time.Minute

// renewCSR renews l through a CertificateSigningRequest: for a new key, the
// subject, names and usages of the current certificate, asked with the
// agent's own client certificate. Once signed and checked, the key is
// written and then the certificate. Between the two renames a reader
// that loads the pair finds they do not match and keeps the pair it has
// (client-go, dynamiccertificates, the agent's own TLS files all do), so
// the new pair is taken at the next read.
func (r *certRenewal) renewCSR(ctx context.Context, l pkiFile, issuer *x509.Certificate) (time.Time, error) {
	i := slices.IndexFunc(r.cfg.Requests, func(q agentconfig.RenewalRequest) bool { return q.CertFile == l.path })
	req := r.cfg.Requests[i]
	if issuer == nil {
		return time.Time{}, fmt.Errorf("no CA certificate in %s signed it", r.cfg.Dir)
	}
	api, ok := r.kube.Get()
	if !ok {
		return time.Time{}, errors.New("no API client yet (waiting for the kubeconfig)")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return time.Time{}, fmt.Errorf("new key: %w", err)
	}
	csr, err := newCSR(l.cert, key, req.SignerName, r.cfg.Lifetime.Duration, csrName(r.machine, l.path))
	if err != nil {
		return time.Time{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, csrTimeout)
	defer cancel()
	created, err := api.CreateCSR(ctx, csr)
	if err != nil {
		return time.Time{}, fmt.Errorf("create CSR: %w", err)
	}
	r.log.Info("asked for a certificate", "csr", created.Name, "path", l.path, "signer", req.SignerName)
	certPEM, err := r.waitSigned(ctx, api, created.Name)
	if err != nil {
		return time.Time{}, err
	}
	cert, err := checkIssued(certPEM, key, l.cert, issuer, r.now())
	if err != nil {
		return time.Time{}, fmt.Errorf("CSR %s: %w", created.Name, err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return time.Time{}, fmt.Errorf("marshal key: %w", err)
	}
	if err := writeFileAtomic(req.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return time.Time{}, err
	}
	if err := writeFileAtomic(l.path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})); err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

// csrName is the CSR's generateName: kubeup-<machine>-<file>-.
func csrName(machine, path string) string {
	return "kubeup-" + machine + "-" + strings.TrimSuffix(filepath.Base(path), ".crt") + "-"
}

// newCSR is the CertificateSigningRequest for a certificate like cur, for
// key: the same subject (byte for byte when cur was parsed), names and
// usages.
func newCSR(cur *x509.Certificate, key *ecdsa.PrivateKey, signer string, lifetime time.Duration, generateName string) (*kubeCSR, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		RawSubject: cur.RawSubject, Subject: cur.Subject, // RawSubject wins when there is one (a parsed certificate)
		DNSNames: cur.DNSNames, IPAddresses: cur.IPAddresses,
		EmailAddresses: cur.EmailAddresses, URIs: cur.URIs,
	}, key)
	if err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	secs := int32(min(lifetime.Seconds(), math.MaxInt32))
	return &kubeCSR{
		TypeMeta:   metav1.TypeMeta{APIVersion: certificatesV1.String(), Kind: "CertificateSigningRequest"},
		ObjectMeta: metav1.ObjectMeta{GenerateName: generateName},
		Spec: kubeCSRSpec{
			Request:           pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}),
			SignerName:        signer,
			ExpirationSeconds: &secs,
			Usages:            csrUsages(cur),
		},
	}, nil
}

// csrUsages are a certificate's key usages in the CSR API's words.
func csrUsages(c *x509.Certificate) []string {
	var u []string
	if c.KeyUsage&x509.KeyUsageDigitalSignature != 0 {
		u = append(u, "digital signature")
	}
	if c.KeyUsage&x509.KeyUsageKeyEncipherment != 0 {
		u = append(u, "key encipherment")
	}
	for _, e := range c.ExtKeyUsage {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			u = append(u, "server auth")
		case x509.ExtKeyUsageClientAuth:
			u = append(u, "client auth")
		}
	}
	return u
}

// waitSigned reads the CSR until it carries a certificate, is denied or
// failed, or ctx ends.
func (r *certRenewal) waitSigned(ctx context.Context, api CSRAPI, name string) ([]byte, error) {
	var lastErr error
	for {
		csr, err := api.GetCSR(ctx, name)
		switch {
		case err != nil:
			lastErr = err
		case len(csr.Status.Certificate) > 0:
			return csr.Status.Certificate, nil
		case csr.failed() != "":
			return nil, fmt.Errorf("CSR %s: %s", name, csr.failed())
		}
		if err := sleepCtx(ctx, r.pollCSR); err != nil {
			if lastErr != nil {
				return nil, fmt.Errorf("CSR %s not signed: %w (last error: %v)", name, err, lastErr)
			}
			return nil, fmt.Errorf("CSR %s not signed within %s (the addon manager approves it): %w", name, csrTimeout, err)
		}
	}
}

// checkIssued parses the signed certificate and checks it is what was asked
// for: for key, signed by issuer, with cur's subject, names and extended
// usages, and valid now.
func checkIssued(certPEM []byte, key *ecdsa.PrivateKey, cur, issuer *x509.Certificate, now time.Time) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("status.certificate is not a PEM certificate")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse the signed certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	switch {
	case !ok || !pub.Equal(&key.PublicKey):
		return nil, errors.New("the signed certificate is not for the requested key")
	case cert.CheckSignatureFrom(issuer) != nil:
		return nil, fmt.Errorf("the signed certificate is not signed by %q", issuer.Subject.CommonName)
	case cert.Subject.CommonName != cur.Subject.CommonName || !slices.Equal(cert.Subject.Organization, cur.Subject.Organization):
		return nil, fmt.Errorf("the signed certificate is for %q, not %q", cert.Subject, cur.Subject)
	case !slices.Equal(cert.DNSNames, cur.DNSNames) || !slices.EqualFunc(cert.IPAddresses, cur.IPAddresses, net.IP.Equal):
		return nil, fmt.Errorf("the signed certificate names %v %v, not %v %v", cert.DNSNames, cert.IPAddresses, cur.DNSNames, cur.IPAddresses)
	case !sameUsages(cert.ExtKeyUsage, cur.ExtKeyUsage):
		return nil, fmt.Errorf("the signed certificate's usages %v are not %v", cert.ExtKeyUsage, cur.ExtKeyUsage)
	case now.Before(cert.NotBefore) || !now.Before(cert.NotAfter):
		return nil, fmt.Errorf("the signed certificate is valid from %s to %s, not now", cert.NotBefore, cert.NotAfter)
	}
	return cert, nil
}

func sameUsages(a, b []x509.ExtKeyUsage) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
