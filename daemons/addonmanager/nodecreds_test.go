package addonmanager

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/test/kubetest"
)

var (
	agentGroups = []string{components.AgentGroup, "system:authenticated"}
	// The two node credentials as a node's agent asks for them.
	agentCSR = csrTemplate{
		user: components.AgentUser, groups: agentGroups, signer: components.AgentSignerName,
		cn: "kubeup-agent", org: []string{"kubeup:agents"}, dns: []string{"kubeup-agent", "localhost"}, ips: []string{"127.0.0.1"},
		usages: []certificatesv1.KeyUsage{"digital signature", "server auth", "client auth"},
	}
	proxyCSR = csrTemplate{
		user: components.AgentUser, groups: agentGroups, signer: certificatesv1.KubeAPIServerClientSignerName,
		cn: "system:kube-proxy", org: []string{},
		usages: []certificatesv1.KeyUsage{"digital signature", "client auth"},
	}
)

// joiner makes a request the bootstrap token's.
func joiner(c *csrTemplate) {
	c.user, c.groups = "system:bootstrap:abcdef", []string{components.BootstrapGroup, "system:bootstrappers", "system:authenticated"}
}

func TestReviewNodeCredentialCSR(t *testing.T) {
	t.Parallel()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		csr  csrTemplate
		want Verdict
	}{
		{"agent certificate", agentCSR, Approve},
		{"kube-proxy certificate", proxyCSR, Approve},
		{"names in another order", with(agentCSR, func(c *csrTemplate) { c.dns = []string{"localhost", "kubeup-agent"} }), Approve},
		{"usages in another order", with(proxyCSR, func(c *csrTemplate) { c.usages = []certificatesv1.KeyUsage{"client auth", "digital signature"} }), Approve},
		// A node joining with the bootstrap token (metal: no keys in its seed).
		{"agent certificate, joining", with(agentCSR, joiner), Approve},
		{"kube-proxy certificate, joining", with(proxyCSR, joiner), Approve},
		{"admin, joining", with(proxyCSR, func(c *csrTemplate) { joiner(c); c.cn, c.org = "kubernetes-admin", []string{"system:masters"} }), Deny},
		{"a bootstrap user outside kubeup's token group", with(agentCSR, func(c *csrTemplate) {
			c.user, c.groups = "system:bootstrap:abcdef", []string{"system:bootstrappers", "system:authenticated"}
		}), Deny},
		{"kube-proxy by a bootstrap user outside kubeup's token group", with(proxyCSR, func(c *csrTemplate) {
			c.user, c.groups = "system:bootstrap:abcdef", []string{"system:bootstrappers", "system:authenticated"}
		}), Ignore},
		{"kubeup's token group, not a bootstrap user", with(agentCSR, func(c *csrTemplate) { c.user, c.groups = "alice", []string{components.BootstrapGroup} }), Deny},

		// Not an agent's request: not this approver's business, except
		// on kubeup's own signer.
		{"kube-proxy by a user", with(proxyCSR, func(c *csrTemplate) { c.user, c.groups = "alice", []string{"system:authenticated"} }), Ignore},
		{"kube-proxy by a node", with(proxyCSR, func(c *csrTemplate) { c.user, c.groups = "system:node:worker-1", []string{"system:nodes"} }), Ignore},
		{"agent name outside the agents' group", with(proxyCSR, func(c *csrTemplate) { c.groups = []string{"system:authenticated"} }), Ignore},
		{"kubeup signer by a user", with(agentCSR, func(c *csrTemplate) { c.user, c.groups = "alice", []string{"system:authenticated"} }), Deny},
		{"other signer", with(agentCSR, func(c *csrTemplate) { c.signer = certificatesv1.KubeletServingSignerName }), Ignore},
		{"kubelet client signer", with(proxyCSR, func(c *csrTemplate) { c.signer = certificatesv1.KubeAPIServerClientKubeletSignerName }), Ignore},

		// An agent asking for anything else.
		{"admin", with(proxyCSR, func(c *csrTemplate) { c.cn, c.org = "kubernetes-admin", []string{"system:masters"} }), Deny},
		{"kube-proxy in system:masters", with(proxyCSR, func(c *csrTemplate) { c.org = []string{"system:masters"} }), Deny},
		{"agent in system:masters too", with(agentCSR, func(c *csrTemplate) { c.org = []string{"kubeup:agents", "system:masters"} }), Deny},
		{"a node's identity", with(proxyCSR, func(c *csrTemplate) { c.cn, c.org = "system:node:worker-1", []string{"system:nodes"} }), Deny},
		{"kube-proxy from kubeup's signer", with(proxyCSR, func(c *csrTemplate) { c.signer = components.AgentSignerName }), Deny},
		{"agent from the client signer", with(agentCSR, func(c *csrTemplate) { c.signer = certificatesv1.KubeAPIServerClientSignerName }), Deny},
		{"kube-proxy as a server", with(proxyCSR, func(c *csrTemplate) {
			c.usages = []certificatesv1.KeyUsage{"digital signature", "client auth", "server auth"}
		}), Deny},
		{"agent without server auth", with(agentCSR, func(c *csrTemplate) { c.usages = []certificatesv1.KeyUsage{"digital signature", "client auth"} }), Deny},
		{"agent signing certificates", with(agentCSR, func(c *csrTemplate) {
			c.usages = append(slices.Clone(c.usages), "cert sign")
		}), Deny},
		{"extra DNS name", with(agentCSR, func(c *csrTemplate) { c.dns = []string{"kubeup-agent", "localhost", "kubernetes"} }), Deny},
		{"extra IP address", with(agentCSR, func(c *csrTemplate) { c.ips = []string{"127.0.0.1", "10.96.0.1"} }), Deny},
		{"names on kube-proxy", with(proxyCSR, func(c *csrTemplate) { c.dns = []string{"localhost"} }), Deny},
		{"email name", with(proxyCSR, func(c *csrTemplate) { c.emails = []string{"root@node-0"} }), Deny},
		{"URI name", with(agentCSR, func(c *csrTemplate) { c.uris = []string{"spiffe://cluster/agent"} }), Deny},
		{"RSA key", with(proxyCSR, func(c *csrTemplate) { c.key = rsaKey }), Deny},
		{"P-384 key", with(proxyCSR, func(c *csrTemplate) { c.key = p384 }), Deny},
		{"not a CSR", with(agentCSR, func(c *csrTemplate) {
			c.request = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}), Deny},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := ReviewNodeCredentialCSR(newCSR(t, c.csr), components.NodeCredentials())
			if d.Verdict != c.want {
				t.Errorf("verdict = %s (%s), want %s", d.Verdict, d.Reason, c.want)
			}
			if d.Reason == "" {
				t.Error("no reason given")
			}
		})
	}

	// A request whose signature does not match its key (someone else's
	// public key) is denied.
	forged := newCSR(t, proxyCSR)
	block, _ := pem.Decode(forged.Spec.Request)
	block.Bytes[len(block.Bytes)-1] ^= 1
	forged.Spec.Request = pem.EncodeToMemory(block)
	if d := ReviewNodeCredentialCSR(forged, components.NodeCredentials()); d.Verdict != Deny {
		t.Errorf("bad signature: verdict = %s (%s), want deny", d.Verdict, d.Reason)
	}
	decidedCSR := newCSR(t, agentCSR)
	decidedCSR.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateDenied, Status: corev1.ConditionTrue}}
	if d := ReviewNodeCredentialCSR(decidedCSR, components.NodeCredentials()); d.Verdict != Ignore {
		t.Errorf("denied CSR: verdict = %s, want ignore", d.Verdict)
	}
}

// testSigner is a Signer over a throw-away CA on disk.
func testSigner(t *testing.T, now time.Time, duration time.Duration) (*Signer, *kubetest.CA) {
	t.Helper()
	ca := kubetest.NewCA(t, "kubernetes")
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "ca.crt"), filepath.Join(dir, "ca.key")
	kubetest.WritePEM(t, certFile, "CERTIFICATE", ca.Cert.Raw)
	der, err := x509.MarshalECPrivateKey(ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	kubetest.WritePEM(t, keyFile, "EC PRIVATE KEY", der)
	return &Signer{CertFile: certFile, KeyFile: keyFile, Duration: duration, Now: func() time.Time { return now }}, ca
}

func TestSignerSign(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	s, ca := testSigner(t, now, time.Hour)
	parse := func(t *testing.T, p []byte) *x509.Certificate {
		t.Helper()
		block, _ := pem.Decode(p)
		if block == nil {
			t.Fatalf("no PEM in %q", p)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	csr := newCSR(t, agentCSR)
	thirty := int32(1800)
	csr.Spec.ExpirationSeconds = &thirty
	certPEM, err := s.Sign(csr, components.NodeCredentials())
	if err != nil {
		t.Fatal(err)
	}
	c := parse(t, certPEM)
	req, _ := parseCSR(csr.Spec.Request)
	switch {
	case c.CheckSignatureFrom(ca.Cert) != nil:
		t.Error("not signed by the CA")
	case !c.PublicKey.(*ecdsa.PublicKey).Equal(req.PublicKey):
		t.Error("not for the request's key")
	case c.Subject.CommonName != "kubeup-agent" || !slices.Equal(c.Subject.Organization, []string{"kubeup:agents"}):
		t.Errorf("subject %v", c.Subject)
	case !slices.Equal(c.DNSNames, []string{"kubeup-agent", "localhost"}) || len(c.IPAddresses) != 1 || c.IPAddresses[0].String() != "127.0.0.1":
		t.Errorf("names %v %v", c.DNSNames, c.IPAddresses)
	case !slices.Equal(c.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) || c.KeyUsage != x509.KeyUsageDigitalSignature || c.IsCA:
		t.Errorf("usages %v %b, CA %v", c.ExtKeyUsage, c.KeyUsage, c.IsCA)
	case !c.NotBefore.Equal(now.Add(-5*time.Minute)) || !c.NotAfter.Equal(now.Add(30*time.Minute)):
		t.Errorf("valid %v to %v, want 30 minutes from now", c.NotBefore, c.NotAfter)
	}

	// Asking for more than the signer's duration gets its duration; for
	// less than 10 minutes, 10 minutes; for nothing, the duration.
	for _, tc := range []struct {
		secs *int32
		want time.Duration
	}{{ptr(int32(7200)), time.Hour}, {ptr(int32(60)), 10 * time.Minute}, {nil, time.Hour}} {
		csr.Spec.ExpirationSeconds = tc.secs
		certPEM, err := s.Sign(csr, components.NodeCredentials())
		if err != nil {
			t.Fatal(err)
		}
		if got := parse(t, certPEM).NotAfter; !got.Equal(now.Add(tc.want)) {
			t.Errorf("expirationSeconds %v: NotAfter %v, want now+%v", tc.secs, got, tc.want)
		}
	}
	// Approved or not, a request that is no node credential is not signed.
	bad := newCSR(t, with(agentCSR, func(c *csrTemplate) { c.org = []string{"system:masters"} }))
	if _, err := s.Sign(bad, components.NodeCredentials()); err == nil {
		t.Error("signed a certificate in system:masters")
	}
	s.KeyFile = s.CertFile
	if _, err := s.Sign(newCSR(t, agentCSR), components.NodeCredentials()); err == nil {
		t.Error("signed without a key")
	}
}

func with(base csrTemplate, mut func(*csrTemplate)) csrTemplate {
	mut(&base)
	return base
}

func ptr[T any](v T) *T { return &v }

// The approver approves an agent's renewals, signs the one of kubeup's
// signer, leaves kube-proxy's to the controller-manager, and refuses to
// sign what an administrator approved that is not a node credential.
func TestCSRApproverSignsNodeCredentials(t *testing.T) {
	agent := newCSR(t, agentCSR)
	agent.Name, agent.UID = "agent", "uid-agent"
	proxy := newCSR(t, proxyCSR)
	proxy.Name, proxy.UID = "proxy", "uid-proxy"
	forced := newCSR(t, with(agentCSR, func(c *csrTemplate) { c.user, c.cn = "alice", "alice" }))
	forced.Name, forced.UID = "forced", "uid-forced"
	forced.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	user := newCSR(t, with(proxyCSR, func(c *csrTemplate) { c.user, c.groups = "alice", []string{"system:authenticated"} }))
	user.Name, user.UID = "user", "uid-user"

	client := fake.NewClientset(agent, proxy, forced, user)
	factory := informers.NewSharedInformerFactory(client, 0)
	m := NewMetrics()
	signer, ca := testSigner(t, time.Now(), time.Hour)
	a, err := NewCSRApprover(client, factory, slog.New(slog.NewTextHandler(t.Output(), nil)), m, signer)
	if err != nil {
		t.Fatal(err)
	}
	ctx := startInformers(t, factory)
	get := func(name string) *certificatesv1.CertificateSigningRequest {
		csr, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	eventually(t, "the agent's CSR approved and signed", func() bool {
		for a.queue.Len() > 0 {
			a.processNext(ctx)
		}
		return len(get("agent").Status.Certificate) > 0 && len(get("forced").Status.Conditions) == 2
	})
	if c := get("agent").Status.Conditions; len(c) != 1 || c[0].Type != certificatesv1.CertificateApproved || c[0].Reason != ApprovedReason {
		t.Errorf("agent CSR conditions %+v", c)
	}
	block, _ := pem.Decode(get("agent").Status.Certificate)
	if c, err := x509.ParseCertificate(block.Bytes); err != nil || c.CheckSignatureFrom(ca.Cert) != nil {
		t.Errorf("agent certificate: %v", err)
	}
	if p := get("proxy"); len(p.Status.Conditions) != 1 || p.Status.Conditions[0].Type != certificatesv1.CertificateApproved || len(p.Status.Certificate) > 0 {
		t.Errorf("kube-proxy CSR: conditions %+v, certificate %d bytes: want approved and left to the controller-manager to sign", p.Status.Conditions, len(p.Status.Certificate))
	}
	if f := get("forced"); f.Status.Conditions[1].Type != certificatesv1.CertificateFailed || len(f.Status.Certificate) > 0 {
		t.Errorf("approved non-credential: conditions %+v, certificate %d bytes: want Failed", f.Status.Conditions, len(f.Status.Certificate))
	}
	if c := get("user").Status.Conditions; len(c) != 0 {
		t.Errorf("a user's kube-apiserver-client CSR got %+v, want it left alone", c)
	}
	for result, want := range map[string]float64{"success": 1, "failure": 1} {
		if got := testutil.ToFloat64(m.csrSigned.WithLabelValues(result)); got != want {
			t.Errorf("csr signed %s = %v, want %v", result, got, want)
		}
	}
	if got := testutil.ToFloat64(m.csr.WithLabelValues("approved")); got != 2 {
		t.Errorf("approved = %v, want 2", got)
	}
}
