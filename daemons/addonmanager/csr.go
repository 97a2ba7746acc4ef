package addonmanager

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	certlisters "k8s.io/client-go/listers/certificates/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"kubeup.dev/kubeup/components"
)

// Identity of kubelets in certificate requests.
const (
	nodeUserPrefix = "system:node:"
	nodesGroup     = "system:nodes"
)

// Condition reasons the approver and signer write.
const (
	ApprovedReason     = "KubeupAutoApproved"
	DeniedReason       = "KubeupAutoDenied"
	SignerFailedReason = "KubeupSignerRefused"
)

// Verdict is what the approver does with a CSR.
type Verdict int

// Verdicts.
const (
	// Ignore: not a kubelet serving CSR, or already decided.
	Ignore Verdict = iota
	Approve
	// Deny: the request can never be valid (its spec is immutable).
	Deny
	// Pending: not approvable now, but it may become so (the Node is not
	// registered yet or its addresses are not reported yet), or it is not
	// from a kubelet and is left to an administrator.
	Pending
)

func (v Verdict) String() string {
	return [...]string{"ignore", "approve", "deny", "pending"}[v]
}

// Decision is a verdict and why.
type Decision struct {
	Verdict Verdict
	Reason  string
}

// servingUsages are the usages a kubelet serving certificate may have;
// the kubernetes.io/kubelet-serving signer requires digital signature and
// server auth, and allows key encipherment (RSA keys).
var servingUsages = []certificatesv1.KeyUsage{
	certificatesv1.UsageDigitalSignature, certificatesv1.UsageKeyEncipherment, certificatesv1.UsageServerAuth,
}

// ReviewServingCSR decides about a kubelet serving certificate request.
// It approves only what the requesting node may claim: its own name as
// CN system:node:<name> in O system:nodes, requested by that node, with
// DNS names that are the node's name or Hostname address, IP addresses the
// Node object reports, and no other kind of name. getNode returns the Node
// (a NotFound error when it is not registered).
func ReviewServingCSR(csr *certificatesv1.CertificateSigningRequest, getNode func(name string) (*corev1.Node, error)) Decision {
	ignore := func(f string, a ...any) Decision { return Decision{Ignore, fmt.Sprintf(f, a...)} }
	deny := func(f string, a ...any) Decision { return Decision{Deny, fmt.Sprintf(f, a...)} }
	pending := func(f string, a ...any) Decision { return Decision{Pending, fmt.Sprintf(f, a...)} }

	if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName {
		return ignore("signer %q is not %s", csr.Spec.SignerName, certificatesv1.KubeletServingSignerName)
	}
	if decided(csr) {
		return ignore("already decided")
	}
	user := csr.Spec.Username
	nodeName, ok := strings.CutPrefix(user, nodeUserPrefix)
	if !ok || nodeName == "" {
		return pending("requested by %q, not by a node: left to an administrator", user)
	}
	if !slices.Contains(csr.Spec.Groups, nodesGroup) {
		return pending("requester %q is not in group %s: left to an administrator", user, nodesGroup)
	}

	req, err := parseCSR(csr.Spec.Request)
	if err != nil {
		return deny("request: %v", err)
	}
	if req.Subject.CommonName != user {
		return deny("subject CN %q is not the requester %q", req.Subject.CommonName, user)
	}
	if !slices.Equal(req.Subject.Organization, []string{nodesGroup}) {
		return deny("subject O %q is not [%s]", req.Subject.Organization, nodesGroup)
	}
	for _, u := range csr.Spec.Usages {
		if !slices.Contains(servingUsages, u) {
			return deny("usage %q is not allowed (allowed: %q)", u, servingUsages)
		}
	}
	for _, u := range []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth} {
		if !slices.Contains(csr.Spec.Usages, u) {
			return deny("usage %q is missing", u)
		}
	}
	if len(req.EmailAddresses) > 0 {
		return deny("email names %q are not allowed", req.EmailAddresses)
	}
	if len(req.URIs) > 0 {
		return deny("URI names are not allowed")
	}
	if len(req.DNSNames) == 0 && len(req.IPAddresses) == 0 {
		return deny("no DNS name or IP address")
	}

	node, err := getNode(nodeName)
	if apierrors.IsNotFound(err) {
		return pending("node %q is not registered yet", nodeName)
	}
	if err != nil {
		return pending("get node %q: %v", nodeName, err)
	}
	hostnames := []string{node.Name}
	var ips []net.IP
	for _, a := range node.Status.Addresses {
		switch {
		case a.Type == corev1.NodeHostName:
			hostnames = append(hostnames, a.Address)
		case a.Type == corev1.NodeInternalIP || a.Type == corev1.NodeExternalIP:
			if ip := net.ParseIP(a.Address); ip != nil {
				ips = append(ips, ip)
			}
		}
	}
	for _, d := range req.DNSNames {
		if !slices.Contains(hostnames, d) {
			return pending("DNS name %q is neither the node's name nor its Hostname address", d)
		}
	}
	for _, ip := range req.IPAddresses {
		if !slices.ContainsFunc(ips, ip.Equal) {
			return pending("IP address %s is not one of node %q's addresses", ip, nodeName)
		}
	}
	return Decision{Approve, fmt.Sprintf("node %q requested a serving certificate for its own names and addresses", nodeName)}
}

func parseCSR(data []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("not a PEM CERTIFICATE REQUEST")
	}
	req, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := req.CheckSignature(); err != nil {
		return nil, fmt.Errorf("signature: %w", err)
	}
	return req, nil
}

func decided(csr *certificatesv1.CertificateSigningRequest) bool {
	if len(csr.Status.Certificate) > 0 {
		return true
	}
	for _, c := range csr.Status.Conditions {
		switch c.Type {
		case certificatesv1.CertificateApproved, certificatesv1.CertificateDenied, certificatesv1.CertificateFailed:
			return true
		}
	}
	return false
}

// CSRApprover approves kubelet serving certificates, which Kubernetes
// never approves by itself (kubelets run with serverTLSBootstrap), and the
// node agents' renewals of their certificates (ReviewNodeCredentialCSR),
// and signs those of kubeup's own signer once approved.
type CSRApprover struct {
	client  kubernetes.Interface
	csrs    certlisters.CertificateSigningRequestLister
	nodes   corelisters.NodeLister
	queue   workqueue.TypedRateLimitingInterface[string]
	log     *slog.Logger
	metrics *Metrics
	creds   []components.NodeCredential
	signer  *Signer // nil: kubeup's signer requests wait unsigned

	mu       sync.Mutex
	reported map[types.UID]string // pending reason last logged, per CSR
}

// NewCSRApprover registers its handlers on factory's CSR and Node
// informers; start the factory, then Run. signer signs the approved
// requests of components.AgentSignerName.
func NewCSRApprover(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger, m *Metrics, signer *Signer) (*CSRApprover, error) {
	csrInf := factory.Certificates().V1().CertificateSigningRequests()
	nodeInf := factory.Core().V1().Nodes()
	a := &CSRApprover{
		client: client, csrs: csrInf.Lister(), nodes: nodeInf.Lister(), log: log, metrics: m,
		creds: components.NodeCredentials(), signer: signer,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "csrs"}),
		reported: map[types.UID]string{},
	}
	enqueue := func(obj any) {
		if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok && a.wants(csr) {
			a.queue.Add(csr.Name)
		}
	}
	if _, err := csrInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: func(obj any) {
			if tomb, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = tomb.Obj
			}
			if csr, ok := obj.(*certificatesv1.CertificateSigningRequest); ok {
				a.forget(csr.UID)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("watch certificate signing requests: %w", err)
	}
	// A CSR can race its node's registration or address report.
	nodeChanged := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok {
			a.enqueueNode(n.Name)
		}
	}
	if _, err := nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    nodeChanged,
		UpdateFunc: func(old, obj any) { nodeChanged(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	return a, nil
}

// wants: an undecided request it reviews, or one it signs.
func (a *CSRApprover) wants(csr *certificatesv1.CertificateSigningRequest) bool {
	if needsSigning(csr) {
		return a.signer != nil
	}
	if decided(csr) {
		return false
	}
	return csr.Spec.SignerName == certificatesv1.KubeletServingSignerName ||
		slices.ContainsFunc(a.creds, func(c components.NodeCredential) bool { return c.SignerName == csr.Spec.SignerName })
}

func (a *CSRApprover) enqueueNode(name string) {
	csrs, err := a.csrs.List(labels.Everything())
	if err != nil {
		return
	}
	for _, csr := range csrs {
		if csr.Spec.Username == nodeUserPrefix+name && !decided(csr) &&
			csr.Spec.SignerName == certificatesv1.KubeletServingSignerName {
			a.queue.Add(csr.Name)
		}
	}
}

func (a *CSRApprover) forget(uid types.UID) {
	a.mu.Lock()
	delete(a.reported, uid)
	a.mu.Unlock()
}

// Run works the queue until ctx ends.
func (a *CSRApprover) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		a.queue.ShutDown()
	}()
	for a.processNext(ctx) {
	}
}

func (a *CSRApprover) processNext(ctx context.Context) bool {
	name, quit := a.queue.Get()
	if quit {
		return false
	}
	defer a.queue.Done(name)
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := a.review(ctx, name); err != nil {
		a.log.Warn("CSR approval failed; will retry", "csr", name, "err", err)
		a.queue.AddRateLimited(name)
		return true
	}
	a.queue.Forget(name)
	return true
}

func (a *CSRApprover) review(ctx context.Context, name string) error {
	csr, err := a.csrs.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if needsSigning(csr) {
		return a.sign(ctx, csr)
	}
	kind := "kubelet serving CSR"
	d := ReviewServingCSR(csr, a.nodes.Get)
	if csr.Spec.SignerName != certificatesv1.KubeletServingSignerName {
		kind, d = "node credential CSR", ReviewNodeCredentialCSR(csr, a.creds)
	}
	switch d.Verdict {
	case Ignore:
		return nil
	case Pending:
		a.mu.Lock()
		changed := a.reported[csr.UID] != d.Reason
		a.reported[csr.UID] = d.Reason
		a.mu.Unlock()
		if changed {
			a.log.Info(kind+" left pending", "csr", name, "requester", csr.Spec.Username, "reason", d.Reason)
			a.metrics.csr.WithLabelValues("pending").Inc()
		}
		return nil
	}
	c := csr.DeepCopy()
	cond := certificatesv1.CertificateSigningRequestCondition{
		Type: certificatesv1.CertificateApproved, Status: corev1.ConditionTrue,
		Reason: ApprovedReason, Message: d.Reason, LastUpdateTime: metav1.Now(),
	}
	decision := "approved"
	if d.Verdict == Deny {
		cond.Type, cond.Reason, decision = certificatesv1.CertificateDenied, DeniedReason, "denied"
	}
	c.Status.Conditions = append(c.Status.Conditions, cond)
	if _, err := a.client.CertificatesV1().CertificateSigningRequests().UpdateApproval(ctx, name, c, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("%s CSR %s: %w", decision, name, err)
	}
	a.forget(csr.UID)
	a.metrics.csr.WithLabelValues(decision).Inc()
	level := slog.LevelInfo
	if d.Verdict == Deny {
		level = slog.LevelWarn
	}
	a.log.Log(ctx, level, kind+" "+decision, "csr", name, "requester", csr.Spec.Username, "reason", d.Reason)
	return nil
}

// sign issues the certificate of an approved request to kubeup's signer
// and writes it into the request's status; a request the signer refuses
// gets a Failed condition.
func (a *CSRApprover) sign(ctx context.Context, csr *certificatesv1.CertificateSigningRequest) error {
	c := csr.DeepCopy()
	certPEM, err := a.signer.Sign(csr, a.creds)
	if err != nil {
		a.metrics.csrSigned.WithLabelValues("failure").Inc()
		if !errors.Is(err, ErrSignRefused) {
			return fmt.Errorf("sign CSR %s: %w", csr.Name, err) // retried
		}
		c.Status.Conditions = append(c.Status.Conditions, certificatesv1.CertificateSigningRequestCondition{
			Type: certificatesv1.CertificateFailed, Status: corev1.ConditionTrue,
			Reason: SignerFailedReason, Message: err.Error(), LastUpdateTime: metav1.Now(),
		})
		a.log.Warn("CSR not signed", "csr", csr.Name, "requester", csr.Spec.Username, "err", err)
	} else {
		c.Status.Certificate = certPEM
	}
	if _, err := a.client.CertificatesV1().CertificateSigningRequests().UpdateStatus(ctx, c, metav1.UpdateOptions{}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("write the certificate of CSR %s: %w", csr.Name, err)
	}
	if len(c.Status.Certificate) > 0 {
		a.metrics.csrSigned.WithLabelValues("success").Inc()
		a.log.Info("signed CSR", "csr", csr.Name, "requester", csr.Spec.Username, "signer", csr.Spec.SignerName)
	}
	return nil
}
