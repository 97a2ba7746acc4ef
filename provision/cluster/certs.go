package cluster

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"time"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/render"
)

// agentRenewTimeout bounds one machine's renewal: a node's agent waits for
// its CSRs to be signed.
const agentRenewTimeout = 7 * time.Minute

// MachineCertificates is one machine's answer to `kubeup certs`: what its
// agent renewed (renew), or every certificate it has (check).
type MachineCertificates struct {
	Machine  string
	Renewed  []agent.CertificateRenewal
	Existing []agent.CertificateInfo
	Err      error
}

// RenewCertificates renews what needs the host and asks every machine to
// renew the rest now: it re-issues the host-only admin certificate (for the
// cluster's leaf lifetime) and rewrites the kubeconfig `kubeup kubeconfig`
// prints, then asks each machine's agent, with the new credentials, to
// renew now every certificate it renews by itself. It returns the new admin
// certificate and each machine's answer.
func RenewCertificates(ctx context.Context, dataDir, name string) (*x509.Certificate, []MachineCertificates, error) {
	admin, err := RenewAdminCertificate(dataDir, name)
	if err != nil {
		return nil, nil, err
	}
	st, err := LoadState(dataDir, name)
	if err != nil {
		return nil, nil, err
	}
	b, err := LoadBundle(dataDir, name)
	if err != nil {
		return nil, nil, err
	}
	return admin, eachAgent(ctx, st, b, agentRenewTimeout, func(ctx context.Context, c *agent.Client, mc *MachineCertificates) error {
		var err error
		mc.Renewed, err = c.RenewCertificates(ctx)
		return err
	}), nil
}

// RenewAdminCertificate re-issues the host-only admin certificate for the
// cluster's leaf lifetime and rewrites the kubeconfig `kubeup kubeconfig`
// prints (which embeds it); it returns the new certificate. Nothing on the
// machines renews it: with a short lifetime (tests) the host must.
func RenewAdminCertificate(dataDir, name string) (*x509.Certificate, error) {
	st, err := LoadState(dataDir, name)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(filepath.Join(Dir(dataDir, name), renderDir, "cluster.yaml"))
	if err != nil {
		return nil, fmt.Errorf("the cluster's rendered config (its leaf lifetime): %w", err)
	}
	b, err := pki.Reissue(filepath.Join(Dir(dataDir, name), pkiDir), render.PKIOptions(cfg), "admin")
	if err != nil {
		return nil, err
	}
	kc, err := b.Kubeconfig("admin", st.APIServerURL(), true)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(Dir(dataDir, name), kubeconfigFile), kc, 0o600); err != nil {
		return nil, err
	}
	admin, _ := b.Certificate("admin")
	return admin, nil
}

// CheckCertificates lists every certificate of every machine with its
// expiry, as each agent's last scan found them, and the host's admin
// certificate.
func CheckCertificates(ctx context.Context, dataDir, name string) (*x509.Certificate, []MachineCertificates, error) {
	st, err := LoadState(dataDir, name)
	if err != nil {
		return nil, nil, err
	}
	b, err := LoadBundle(dataDir, name)
	if err != nil {
		return nil, nil, err
	}
	admin, _ := b.Certificate("admin")
	return admin, eachAgent(ctx, st, b, 30*time.Second, func(ctx context.Context, c *agent.Client, mc *MachineCertificates) error {
		s, err := c.Status(ctx)
		if err != nil {
			return err
		}
		mc.Existing = s.Certificates
		return nil
	}), nil
}

// eachAgent calls f with every machine's agent, in the state's order.
func eachAgent(ctx context.Context, st *State, b *pki.Bundle, timeout time.Duration,
	f func(context.Context, *agent.Client, *MachineCertificates) error) []MachineCertificates {
	var out []MachineCertificates
	for _, m := range st.Machines {
		mc := MachineCertificates{Machine: m.Name}
		c, err := AgentClient(ctx, st, m, b)
		if err == nil {
			actx, cancel := context.WithTimeout(ctx, timeout)
			err = f(actx, c, &mc)
			cancel()
		}
		mc.Err = err
		out = append(out, mc)
	}
	return out
}
