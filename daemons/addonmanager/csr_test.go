package addonmanager

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"net"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// csrTemplate describes a request; zero fields take a valid kubelet's values.
type csrTemplate struct {
	cn, signer, user string
	org              []string
	groups           []string
	dns              []string
	ips              []string
	emails           []string
	uris             []string
	usages           []certificatesv1.KeyUsage
	request          []byte        // raw spec.request, overriding the generated one
	key              crypto.Signer // the request's key (default: a new P-256 key)
}

func newCSR(t *testing.T, c csrTemplate) *certificatesv1.CertificateSigningRequest {
	t.Helper()
	if c.user == "" {
		c.user = "system:node:worker-1"
	}
	if c.cn == "" {
		c.cn = c.user
	}
	if c.org == nil {
		c.org = []string{"system:nodes"}
	}
	if c.signer == "" {
		c.signer = certificatesv1.KubeletServingSignerName
	}
	if c.groups == nil {
		c.groups = []string{"system:nodes", "system:authenticated"}
	}
	if c.usages == nil {
		c.usages = []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth}
	}
	req := c.request
	if req == nil {
		key := c.key
		if key == nil {
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			key = k
		}
		tmpl := &x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: c.cn, Organization: c.org},
			DNSNames:       c.dns,
			EmailAddresses: c.emails,
		}
		for _, ip := range c.ips {
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(ip))
		}
		for _, u := range c.uris {
			pu, err := url.Parse(u)
			if err != nil {
				t.Fatal(err)
			}
			tmpl.URIs = append(tmpl.URIs, pu)
		}
		der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
		if err != nil {
			t.Fatal(err)
		}
		req = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	return &certificatesv1.CertificateSigningRequest{
		ObjectMeta: metav1.ObjectMeta{Name: "csr-1", UID: "uid-csr-1"},
		Spec: certificatesv1.CertificateSigningRequestSpec{
			Request: req, SignerName: c.signer, Usages: c.usages, Username: c.user, Groups: c.groups,
		},
	}
}

func worker1() *corev1.Node {
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1"},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.0.0.11"},
			{Type: corev1.NodeHostName, Address: "worker-1.cluster.internal"},
		}},
	}
}

func nodeGetter(nodes ...*corev1.Node) func(string) (*corev1.Node, error) {
	return func(name string) (*corev1.Node, error) {
		for _, n := range nodes {
			if n.Name == name {
				return n, nil
			}
		}
		return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "nodes"}, name)
	}
}

func TestReviewServingCSR(t *testing.T) {
	t.Parallel()
	good := csrTemplate{dns: []string{"worker-1"}, ips: []string{"10.0.0.11"}}
	with := func(mut func(*csrTemplate)) csrTemplate {
		c := good
		mut(&c)
		return c
	}
	for _, c := range []struct {
		name  string
		csr   csrTemplate
		nodes []*corev1.Node
		want  Verdict
	}{
		{"good", good, nil, Approve},
		{"good with key encipherment (RSA)", with(func(c *csrTemplate) {
			c.usages = []certificatesv1.KeyUsage{"digital signature", "key encipherment", "server auth"}
		}), nil, Approve},
		{"Hostname address as DNS name", with(func(c *csrTemplate) { c.dns = []string{"worker-1", "worker-1.cluster.internal"} }), nil, Approve},
		{"IP address only", with(func(c *csrTemplate) { c.dns = nil }), nil, Approve},
		{"wrong signer", with(func(c *csrTemplate) { c.signer = certificatesv1.KubeAPIServerClientKubeletSignerName }), nil, Ignore},
		{"IP address not the node's", with(func(c *csrTemplate) { c.ips = []string{"10.0.0.12"} }), nil, Pending},
		{"DNS name not the node's", with(func(c *csrTemplate) { c.dns = []string{"master-0"} }), nil, Pending},
		{"node not registered yet", good, []*corev1.Node{}, Pending},
		{"extra usage", with(func(c *csrTemplate) {
			c.usages = []certificatesv1.KeyUsage{"digital signature", "server auth", "client auth"}
		}), nil, Deny},
		{"server auth missing", with(func(c *csrTemplate) { c.usages = []certificatesv1.KeyUsage{"digital signature"} }), nil, Deny},
		{"CN of another node", with(func(c *csrTemplate) { c.cn = "system:node:worker-2" }), nil, Deny},
		{"requester is another node", with(func(c *csrTemplate) { c.user, c.cn = "system:node:worker-2", "system:node:worker-1" }), nil, Deny},
		{"organization", with(func(c *csrTemplate) { c.org = []string{"system:nodes", "system:masters"} }), nil, Deny},
		{"email name", with(func(c *csrTemplate) { c.emails = []string{"root@worker-1"} }), nil, Deny},
		{"URI name", with(func(c *csrTemplate) { c.uris = []string{"spiffe://cluster/worker-1"} }), nil, Deny},
		{"no names", with(func(c *csrTemplate) { c.dns, c.ips = nil, nil }), nil, Deny},
		{"not a CSR", with(func(c *csrTemplate) {
			c.request = []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
		}), nil, Deny},
		{"requested by a user", with(func(c *csrTemplate) { c.user, c.groups = "admin", []string{"system:masters"} }), nil, Pending},
		{"node user outside system:nodes", with(func(c *csrTemplate) { c.groups = []string{"system:authenticated"} }), nil, Pending},
	} {
		t.Run(c.name, func(t *testing.T) {
			nodes := c.nodes
			if nodes == nil {
				nodes = []*corev1.Node{worker1()}
			}
			d := ReviewServingCSR(newCSR(t, c.csr), nodeGetter(nodes...))
			if d.Verdict != c.want {
				t.Errorf("verdict = %s (%s), want %s", d.Verdict, d.Reason, c.want)
			}
			if d.Reason == "" {
				t.Error("no reason given")
			}
		})
	}

	decided := newCSR(t, good)
	decided.Status.Conditions = []certificatesv1.CertificateSigningRequestCondition{{Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue}}
	if d := ReviewServingCSR(decided, nodeGetter(worker1())); d.Verdict != Ignore {
		t.Errorf("approved CSR: verdict = %s, want ignore", d.Verdict)
	}
}

func TestCSRApproverApproves(t *testing.T) {
	good := newCSR(t, csrTemplate{dns: []string{"worker-1"}, ips: []string{"10.0.0.11"}})
	bad := newCSR(t, csrTemplate{dns: []string{"worker-1"}, emails: []string{"x@y"}})
	bad.Name, bad.UID = "csr-bad", "uid-bad"
	waiting := newCSR(t, csrTemplate{user: "system:node:worker-2", dns: []string{"worker-2"}})
	waiting.Name, waiting.UID = "csr-waiting", "uid-waiting"
	client := fake.NewClientset(good, bad, waiting, worker1())
	factory := informers.NewSharedInformerFactory(client, 0)
	m := NewMetrics()
	a, err := NewCSRApprover(client, factory, slog.New(slog.NewTextHandler(t.Output(), nil)), m, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := startInformers(t, factory)
	eventually(t, "three queued CSRs", func() bool { return a.queue.Len() == 3 })
	for range 3 {
		a.processNext(ctx)
	}
	get := func(name string) *certificatesv1.CertificateSigningRequest {
		csr, err := client.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return csr
	}
	if c := get("csr-1").Status.Conditions; len(c) != 1 || c[0].Type != certificatesv1.CertificateApproved ||
		c[0].Reason != ApprovedReason || c[0].Status != corev1.ConditionTrue {
		t.Errorf("good CSR conditions = %+v, want Approved/%s", c, ApprovedReason)
	}
	if c := get("csr-bad").Status.Conditions; len(c) != 1 || c[0].Type != certificatesv1.CertificateDenied {
		t.Errorf("bad CSR conditions = %+v, want Denied", c)
	}
	if c := get("csr-waiting").Status.Conditions; len(c) != 0 {
		t.Errorf("CSR of an unregistered node has conditions %+v, want it pending", c)
	}
	for decision, want := range map[string]float64{"approved": 1, "denied": 1, "pending": 1} {
		if got := testutil.ToFloat64(m.csr.WithLabelValues(decision)); got != want {
			t.Errorf("csr decisions %s = %v, want %v", decision, got, want)
		}
	}

	// The node registers: its pending CSR is reviewed again.
	n := worker1()
	n.Name = "worker-2"
	n.Status.Addresses = nil
	if _, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the CSR approved after its node registered", func() bool {
		for a.queue.Len() > 0 {
			a.processNext(ctx)
		}
		c := get("csr-waiting").Status.Conditions
		return len(c) == 1 && c[0].Type == certificatesv1.CertificateApproved
	})
}
