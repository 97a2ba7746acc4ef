package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubeup.dev/kubeup/components/agentconfig"
)

// Renewal timing: a leaf is due when less than renewFraction of its
// lifetime is left, up to renewJitter of it earlier (per machine and file).
// The task sleeps until the next leaf is due, but at most renewCheckMax (a
// clock jump or a file replaced under it is noticed), and renewRetry after
// a failure.
const (
	renewFraction = 1.0 / 3
	renewJitter   = 0.1
	renewCheckMax = 10 * time.Minute
	renewRetry    = time.Minute
	// renewBackdate is how far NotBefore is back-dated, and shortLifetime
	// the lifetime under which NotAfter is not shortened by it: what
	// kube-controller-manager's signer and provision/pki do.
	renewBackdate = 5 * time.Minute
	shortLifetime = 8 * time.Hour
)

// Renewal methods.
const (
	renewLocal = "local" // re-issued on the machine with its CA's key
	renewCSR   = "csr"   // signed through a CertificateSigningRequest
)

// CertificateRenewal is one renewable certificate after a renewal pass:
// POST /v1/certs/renew returns one per certificate.
type CertificateRenewal struct {
	Path    string `json:"path"`
	Subject string `json:"subject"`
	// Method is "local" (re-issued with the key of its CA, which is on
	// this machine) or "csr" (signed through the API).
	Method  string `json:"method"`
	Renewed bool   `json:"renewed"`
	// NotAfter is the expiry of the certificate now on disk.
	NotAfter time.Time `json:"notAfter"`
	Error    string    `json:"error,omitempty"`
}

// certRenewal is the task that renews the machine's certificates before
// they expire (cfg.Renewal): every leaf of the PKI directory whose CA key
// is on the machine is re-issued here, keeping its key (so only its .crt
// file changes, in one rename, and every reader — which pairs it with the
// unchanged key — takes it whenever it re-reads it); the leaves listed in
// Requests are renewed through CSRs with a new key.
type certRenewal struct {
	cfg     agentconfig.Renewal
	machine string
	kube    *kubeClient
	log     *slog.Logger
	now     func() time.Time
	// pollCSR is how often a pending CSR is read again.
	pollCSR time.Duration

	renewals *prometheus.CounterVec
	force    chan chan []CertificateRenewal
	running  atomic.Bool // Run is in its loop: RenewNow is answered
}

func newCertRenewal(cfg agentconfig.Renewal, machine string, kube *kubeClient, log *slog.Logger, now func() time.Time) *certRenewal {
	return &certRenewal{
		cfg: cfg, machine: machine, kube: kube, log: log, now: now, pollCSR: 2 * time.Second,
		renewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_certificate_renewals_total",
			Help: "Certificate renewals by the agent, by file and result (success or failure).",
		}, []string{"file", "result"}),
		force: make(chan chan []CertificateRenewal),
	}
}

func (r *certRenewal) Name() string { return "certificate-renewal" }

// Run renews what is due, then sleeps until the next certificate is due;
// RenewNow's requests renew everything at once.
func (r *certRenewal) Run(ctx context.Context) error {
	r.running.Store(true)
	defer r.running.Store(false)
	for {
		_, next := r.pass(ctx, false)
		wait := renewCheckMax
		if !next.IsZero() {
			wait = min(max(next.Sub(r.now()), 0), renewCheckMax)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		case reply := <-r.force:
			t.Stop()
			results, _ := r.pass(ctx, true)
			reply <- results
		}
	}
}

// RenewNow renews every renewable certificate now, whatever its expiry
// (POST /v1/certs/renew); it fails when the task is not running.
func (r *certRenewal) RenewNow(ctx context.Context) ([]CertificateRenewal, error) {
	if !r.running.Load() {
		return nil, errors.New("the renewal task is not running (see the agent's status)")
	}
	reply := make(chan []CertificateRenewal, 1)
	select {
	case r.force <- reply:
	case <-ctx.Done():
		return nil, fmt.Errorf("the renewal task is busy or not running: %w", ctx.Err())
	}
	select {
	case res := <-reply:
		return res, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("renewal still running: %w", ctx.Err())
	}
}

// pass renews the due certificates (all of them when force) and returns
// what it did and when the next one is due (zero: none is renewable).
func (r *certRenewal) pass(ctx context.Context, force bool) ([]CertificateRenewal, time.Time) {
	now := r.now()
	var next time.Time
	pki, err := readPKIDir(r.cfg.Dir)
	if err != nil {
		r.log.Error("cannot read the PKI directory", "dir", r.cfg.Dir, "err", err)
		return nil, now.Add(renewRetry)
	}
	var out []CertificateRenewal
	for _, l := range pki.leaves {
		method, ca := r.method(pki, l)
		if method == "" {
			continue
		}
		res := CertificateRenewal{Path: l.path, Subject: l.cert.Subject.String(), Method: method, NotAfter: l.cert.NotAfter.UTC()}
		due := renewalTime(l.cert, r.machine, l.path)
		if !force && now.Before(due) {
			next = minTime(next, due)
			out = append(out, res)
			continue
		}
		var notAfter time.Time
		if method == renewLocal {
			notAfter, err = r.renewLocal(l, ca)
		} else {
			notAfter, err = r.renewCSR(ctx, l, pki.issuer(l.cert))
		}
		if err != nil {
			res.Error = err.Error()
			r.renewals.WithLabelValues(l.path, "failure").Inc()
			r.log.Error("certificate renewal failed; will retry", "path", l.path, "method", method, "expires", res.NotAfter, "err", err)
			next = minTime(next, now.Add(renewRetry))
		} else {
			res.Renewed, res.NotAfter = true, notAfter.UTC()
			r.renewals.WithLabelValues(l.path, "success").Inc()
			r.log.Info("renewed certificate", "path", l.path, "subject", res.Subject, "method", method, "notAfter", res.NotAfter)
		}
		out = append(out, res)
	}
	return out, next
}

// method says how leaf l is renewed here, if at all: locally with the
// signing CA (returned), or through a CSR.
func (r *certRenewal) method(pki *pkiDir, l pkiFile) (string, *pkiCA) {
	if ca := pki.signer(l.cert); ca != nil {
		return renewLocal, ca
	}
	if slices.ContainsFunc(r.cfg.Requests, func(q agentconfig.RenewalRequest) bool { return q.CertFile == l.path }) {
		return renewCSR, nil
	}
	return "", nil
}

// renewalTime is when cert is due: when renewFraction of its lifetime is
// left, minus a jitter of up to renewJitter of it that is fixed for the
// machine and the file (machines that got their certificates at the same
// time renew at different times, and a restarted agent keeps its time).
func renewalTime(cert *x509.Certificate, machine, path string) time.Time {
	lifetime := cert.NotAfter.Sub(cert.NotBefore)
	h := fnv.New64a()
	h.Write([]byte(machine + "\x00" + path))
	jitter := float64(h.Sum64()) / (1 << 64) * renewJitter
	return cert.NotAfter.Add(-time.Duration(float64(lifetime) * (renewFraction + jitter)))
}

// renewLocal re-issues l with ca's key and replaces its certificate file.
func (r *certRenewal) renewLocal(l pkiFile, ca *pkiCA) (time.Time, error) {
	der, err := reissue(l.cert, ca.cert, ca.key, r.now(), r.cfg.Lifetime.Duration)
	if err != nil {
		return time.Time{}, err
	}
	cert, _ := x509.ParseCertificate(der) // reissue parsed it
	if err := writeFileAtomic(l.path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

// reissue signs a new certificate for leaf's public key with ca: the same
// subject (byte for byte), names, key usages and subject key id, a new
// serial number, valid from now (back-dated) for lifetime, and never past
// the CA.
func reissue(leaf, ca *x509.Certificate, caKey crypto.Signer, now time.Time, lifetime time.Duration) ([]byte, error) {
	if lifetime <= 0 {
		return nil, fmt.Errorf("lifetime %v is not positive", lifetime)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, fmt.Errorf("serial number: %w", err)
	}
	if serial.Sign() == 0 {
		serial.SetInt64(1) // serial numbers are positive
	}
	notBefore, notAfter := validity(now, lifetime)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("CA %q expires %s", ca.Subject.CommonName, ca.NotAfter.Format(time.RFC3339))
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		RawSubject:            leaf.RawSubject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              leaf.KeyUsage,
		ExtKeyUsage:           leaf.ExtKeyUsage,
		UnknownExtKeyUsage:    leaf.UnknownExtKeyUsage,
		BasicConstraintsValid: leaf.BasicConstraintsValid,
		SubjectKeyId:          leaf.SubjectKeyId,
		DNSNames:              leaf.DNSNames,
		EmailAddresses:        leaf.EmailAddresses,
		IPAddresses:           leaf.IPAddresses,
		URIs:                  leaf.URIs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, leaf.PublicKey, caKey)
	if err != nil {
		return nil, fmt.Errorf("sign: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parse the new certificate: %w", err)
	}
	if err := cert.CheckSignatureFrom(ca); err != nil {
		return nil, fmt.Errorf("the new certificate does not verify: %w", err)
	}
	return der, nil
}

// validity is kube-controller-manager's: back-dated by renewBackdate, and
// lasting lifetime from now when it is short (so a 30m certificate lasts
// 30 minutes), or from NotBefore otherwise.
func validity(now time.Time, lifetime time.Duration) (notBefore, notAfter time.Time) {
	notBefore = now.Add(-renewBackdate).UTC().Truncate(time.Second)
	if lifetime < shortLifetime {
		return notBefore, notBefore.Add(renewBackdate + lifetime)
	}
	return notBefore, notBefore.Add(lifetime)
}

// chown is (*os.File).Chown; tests count its calls.
var chown = (*os.File).Chown

// writeFileAtomic replaces path with data: a temporary file in the same
// directory (mode and owner of the file it replaces, or 0600; chown only
// when the owner differs from the writer's), synced, then
// renamed over it, and the directory synced. A reader sees the old file or
// the new one, never a part; a failure leaves the old one and no temporary
// file.
func writeFileAtomic(path string, data []byte) error {
	mode, uid, gid := os.FileMode(0o600), -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		uid, gid = fileOwner(fi)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".renew-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = func() error {
		defer f.Close()
		if err := f.Chmod(mode); err != nil {
			return err
		}
		// The owner only when it differs from the new file's (the
		// agent's, root): the sandboxed agent may not call chown at all
		// (SystemCallFilter=~@privileged), and every certificate it
		// renews is root's.
		if uid >= 0 {
			fi, err := f.Stat()
			if err != nil {
				return err
			}
			if u, g := fileOwner(fi); u != uid || g != gid {
				if err := chown(f, uid, gid); err != nil {
					return err
				}
			}
		}
		if _, err := f.Write(data); err != nil {
			return err
		}
		return f.Sync()
	}()
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // the rename survives a crash
		d.Close()
	}
	return nil
}

// pkiDir is what readPKIDir found: CA certificates (with their key when it
// is there) and leaves.
type pkiDir struct {
	cas    []pkiCA
	leaves []pkiFile
}

type pkiFile struct {
	path string
	cert *x509.Certificate
}

type pkiCA struct {
	pkiFile
	key crypto.Signer // nil when the CA's key is not on the machine
}

// readPKIDir reads every <name>.crt under dir: CA certificates (with
// <name>.key when it is there and matches) and leaves. Files that do not
// parse are skipped: the certificate scan reports them.
func readPKIDir(dir string) (*pkiDir, error) {
	var p pkiDir
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() || !strings.HasSuffix(path, ".crt") {
			return nil
		}
		certs, ok := readPEMCertificates(path)
		if !ok || len(certs) == 0 {
			return nil
		}
		f := pkiFile{path: path, cert: certs[0]}
		if !f.cert.IsCA {
			p.leaves = append(p.leaves, f)
			return nil
		}
		p.cas = append(p.cas, pkiCA{pkiFile: f, key: readCAKey(strings.TrimSuffix(path, ".crt")+".key", f.cert)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &p, nil
}

// readCAKey reads a CA's private key; nil when it is not there or is not
// the certificate's.
func readCAKey(path string, cert *x509.Certificate) crypto.Signer {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	key, err := parsePrivateKey(data)
	if err != nil {
		return nil
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil
	}
	return key
}

// parsePrivateKey reads a PEM EC, PKCS #1 or PKCS #8 private key.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM data")
	}
	switch block.Type {
	case "EC PRIVATE KEY":
		return x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		return x509.ParsePKCS1PrivateKey(block.Bytes)
	case "PRIVATE KEY":
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, err
		}
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, fmt.Errorf("unsupported key %T", k)
	}
	return nil, fmt.Errorf("PEM block %q is not a private key", block.Type)
}

// issuer is the CA certificate that signed cert, whether or not its key is
// here; nil when none in the directory did.
func (p *pkiDir) issuer(cert *x509.Certificate) *x509.Certificate {
	for _, ca := range p.cas {
		if bytes.Equal(cert.RawIssuer, ca.cert.RawSubject) && cert.CheckSignatureFrom(ca.cert) == nil {
			return ca.cert
		}
	}
	return nil
}

// signer is the CA that signed cert if its key is on the machine.
func (p *pkiDir) signer(cert *x509.Certificate) *pkiCA {
	for i, ca := range p.cas {
		if ca.key != nil && bytes.Equal(cert.RawIssuer, ca.cert.RawSubject) && cert.CheckSignatureFrom(ca.cert) == nil {
			return &p.cas[i]
		}
	}
	return nil
}

// minTime is the earlier of a and b; a zero a is no time yet.
func minTime(a, b time.Time) time.Time {
	if a.IsZero() || b.Before(a) {
		return b
	}
	return a
}

// fileOwner is the owner of a file, or -1s when the platform does not say.
func fileOwner(fi os.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}
