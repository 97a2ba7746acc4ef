package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/addonmanager"
	"kubeup.dev/kubeup/provision/pki"
)

// A node whose seed carries only the CA certificate and the bootstrap
// token asks for its agent and kube-proxy certificates: requests the addon
// manager's review approves for a bootstrap-token user, retried while the
// API server does not answer, written key first, and checked against the
// CA in the PKI directory.
func TestJoinAsksForTheMissingCertificates(t *testing.T) {
	dir, b := machinePKI(t, pki.PlaceNode, "w1", time.Now(), 30*time.Minute)
	var reqs []agentconfig.RenewalRequest
	for _, nc := range components.NodeCredentials() {
		q := agentconfig.RenewalRequest{CertFile: filepath.Join(dir, filepath.Base(nc.CertFile)), KeyFile: filepath.Join(dir, filepath.Base(nc.KeyFile)),
			SignerName: nc.SignerName, Template: nc.Template()}
		os.Remove(q.CertFile)
		os.Remove(q.KeyFile)
		reqs = append(reqs, q)
	}
	signer, client, caCert := clusterSigner(b)

	r := newCertRenewal(agentconfig.Renewal{Lifetime: metav1.Duration{Duration: 30 * time.Minute}, Dir: dir, Requests: reqs,
		Join: &agentconfig.Join{BootstrapKubeconfig: "/etc/kubernetes/bootstrap-kubelet.conf"}}, "w1", nil, slog.New(slog.DiscardHandler), time.Now)
	r.pollCSR = 10 * time.Millisecond
	calls := 0
	var extended []time.Duration
	err := joinRequests(context.Background(), r, reqs, func() (CSRAPI, error) {
		if calls++; calls == 1 {
			return nil, errors.New("connection refused") // the master is still booting
		}
		return fakeKube{client}, nil
	}, func(d time.Duration) error { extended = append(extended, d); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(extended) == 0 || extended[0] != joinStartExtension {
		t.Errorf("systemd's start timeout extended by %v", extended)
	}
	if len(signer.csrs) != 2 {
		t.Fatalf("%d CSRs, want 2", len(signer.csrs))
	}
	for _, csr := range signer.csrs {
		// What the addon manager decides about it, asked with the token.
		csr.Spec.Username = "system:bootstrap:abcdef"
		csr.Spec.Groups = []string{components.BootstrapGroup, "system:bootstrappers", "system:authenticated"}
		if d := addonmanager.ReviewNodeCredentialCSR(csr, components.NodeCredentials()); d.Verdict != addonmanager.Approve {
			t.Errorf("%s: the addon manager would not approve it: %+v", csr.Name, d)
		}
	}
	for _, q := range reqs {
		pair, err := tls.LoadX509KeyPair(q.CertFile, q.KeyFile)
		if err != nil {
			t.Fatalf("%s: %v", q.CertFile, err)
		}
		cert, _ := x509.ParseCertificate(pair.Certificate[0])
		if cert.Subject.CommonName != q.Template.CommonName || !slices.Equal(cert.Subject.Organization, q.Template.Organization) ||
			!slices.Equal(cert.DNSNames, q.Template.DNSNames) || cert.CheckSignatureFrom(caCert) != nil {
			t.Errorf("%s: %v %v", q.CertFile, cert.Subject, cert.DNSNames)
		}
		if fi, _ := os.Stat(q.KeyFile); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", q.KeyFile, fi.Mode())
		}
	}

	// With every file there (a later start), Join does nothing.
	cfg := &agentconfig.Config{Machine: "w1", Renewal: &r.cfg}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := Join(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
		t.Errorf("Join with the certificates there: %v", err)
	}
	// A CA that signed nothing of it: refused, nothing written.
	os.Remove(reqs[0].CertFile)
	os.Remove(reqs[0].KeyFile)
	other, c2, _ := clusterSigner(b)
	other.other = true
	if err := r.joinCSR(context.Background(), fakeKube{c2}, reqs[0]); err == nil {
		t.Error("a certificate for another key was accepted")
	}
	if exists(reqs[0].CertFile) || exists(reqs[0].KeyFile) {
		t.Error("a refused certificate was written")
	}
	if _, err := templateCert(&agentconfig.CertTemplate{CommonName: "x", IPAddresses: []string{"not-an-ip"}}); err == nil {
		t.Error("a template with a bad IP address")
	}
}
