package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/systemd"
)

// joinStartExtension is how much longer the agent asks systemd for, each
// time, while its first certificates are not signed yet (the master may
// still be booting).
const joinStartExtension = 2 * time.Minute

// Join obtains the certificates of cfg.Renewal.Requests that are not on
// the machine yet (renewal.join: a seed without keys), through
// CertificateSigningRequests made with the bootstrap token's kubeconfig;
// the addon manager approves exactly the node credentials for it. It
// returns once every one is written (key first, then certificate), or with
// ctx's error; failed attempts are retried with a back-off from 2 s to 30 s
// (the API server may not be up yet). Without renewal.join, or with every
// certificate present, it returns at once.
func Join(ctx context.Context, cfg *agentconfig.Config, log *slog.Logger) error {
	rn := cfg.Renewal
	if rn == nil || rn.Join == nil {
		return nil
	}
	var missing []agentconfig.RenewalRequest
	for _, q := range rn.Requests {
		if !exists(q.CertFile) || !exists(q.KeyFile) {
			missing = append(missing, q)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	var api KubeAPI
	r := newCertRenewal(*rn, cfg.Machine, nil, log, time.Now)
	return joinRequests(ctx, r, missing, func() (CSRAPI, error) {
		if api != nil {
			return api, nil
		}
		c, err := clientcmd.BuildConfigFromFlags("", rn.Join.BootstrapKubeconfig)
		if err != nil {
			return nil, fmt.Errorf("bootstrap kubeconfig: %w", err)
		}
		c.UserAgent = "kubeup-agent"
		k, err := newRESTKube(c)
		if err != nil {
			return nil, err
		}
		api = k
		return k, nil
	}, systemd.ExtendTimeout)
}

// joinRequests asks for each request in turn until it is written. All the
// while, systemd is asked every half joinStartExtension for another
// joinStartExtension to finish starting (a CSR alone may wait minutes for
// its signature).
func joinRequests(ctx context.Context, r *certRenewal, reqs []agentconfig.RenewalRequest, client func() (CSRAPI, error), extend func(time.Duration) error) error {
	_ = extend(joinStartExtension)
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(joinStartExtension / 2)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				_ = extend(joinStartExtension)
			}
		}
	}()
	for _, q := range reqs {
		delay := 2 * time.Second
		for attempt := 1; ; attempt++ {
			_ = systemd.Status(fmt.Sprintf("joining: asking for %s with the bootstrap token (attempt %d)", q.CertFile, attempt))
			api, err := client()
			if err == nil {
				err = r.joinCSR(ctx, api, q)
			}
			if err == nil {
				r.log.Info("joined: certificate issued with the bootstrap token", "path", q.CertFile, "signer", q.SignerName)
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.log.Warn("first certificate not issued yet; retrying", "path", q.CertFile, "attempt", attempt, "in", delay, "err", err)
			if err := sleepCtx(ctx, delay); err != nil {
				return err
			}
			delay = min(2*delay, 30*time.Second)
		}
	}
	return nil
}

// joinCSR asks for q's first certificate by its template, for a new key,
// and writes both once signed and checked (against the CA certificates of
// the PKI directory, which the seed does carry).
func (r *certRenewal) joinCSR(ctx context.Context, api CSRAPI, q agentconfig.RenewalRequest) error {
	tmpl, err := templateCert(q.Template)
	if err != nil {
		return err
	}
	pki, err := readPKIDir(r.cfg.Dir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("new key: %w", err)
	}
	csr, err := newCSR(tmpl, key, q.SignerName, r.cfg.Lifetime.Duration, csrName(r.machine, q.CertFile))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, csrTimeout)
	defer cancel()
	created, err := api.CreateCSR(ctx, csr)
	if err != nil {
		return fmt.Errorf("create CSR: %w", err)
	}
	r.log.Info("asked for a first certificate", "csr", created.Name, "path", q.CertFile, "signer", q.SignerName)
	certPEM, err := r.waitSigned(ctx, api, created.Name)
	if err != nil {
		return err
	}
	block, _ := pem.Decode(certPEM)
	if block == nil {
		return fmt.Errorf("CSR %s: status.certificate is not PEM", created.Name)
	}
	signed, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("CSR %s: %w", created.Name, err)
	}
	issuer := pki.issuer(signed)
	if issuer == nil {
		return fmt.Errorf("CSR %s: the certificate is signed by %q, no CA of %s", created.Name, signed.Issuer, r.cfg.Dir)
	}
	cert, err := checkIssued(certPEM, key, tmpl, issuer, r.now())
	if err != nil {
		return fmt.Errorf("CSR %s: %w", created.Name, err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("marshal key: %w", err)
	}
	if err := writeFileAtomic(q.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		return err
	}
	return writeFileAtomic(q.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
}

// templateCert is the certificate a template describes, for newCSR and
// checkIssued.
func templateCert(t *agentconfig.CertTemplate) (*x509.Certificate, error) {
	if t == nil {
		return nil, errors.New("no template to ask for a first certificate by")
	}
	c := &x509.Certificate{
		Subject:  pkix.Name{CommonName: t.CommonName, Organization: t.Organization},
		DNSNames: t.DNSNames, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	for _, s := range t.IPAddresses {
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("template: %q is not an IP address", s)
		}
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		c.IPAddresses = append(c.IPAddresses, ip)
	}
	if t.ServerAuth {
		c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if t.ClientAuth {
		c.ExtKeyUsage = append(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	return c, nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
