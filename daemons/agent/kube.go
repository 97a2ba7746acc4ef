package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"kubeup.dev/kubeup/daemons/httpauth"
)

// KubeAPI is the part of the Kubernetes API the agent uses: token and
// access reviews for bearer-token metrics, Nodes for the pod network, and
// CertificateSigningRequests for renewing nodes' certificates.
type KubeAPI interface {
	httpauth.Reviewer
	// NodeListWatch lists and watches Nodes, for an informer.
	NodeListWatch() cache.ListerWatcher
	CSRAPI
}

// CSRAPI creates and reads CertificateSigningRequests.
type CSRAPI interface {
	CreateCSR(ctx context.Context, csr *kubeCSR) (*kubeCSR, error)
	GetCSR(ctx context.Context, name string) (*kubeCSR, error)
}

// restKube is KubeAPI on client-go's rest.RESTClient with a scheme of just
// Nodes (as kubeNode), TokenReviews, SubjectAccessReviews and
// CertificateSigningRequests (as kubeCSR). The generated clientset
// (k8s.io/client-go/kubernetes) would do, but it links and registers every
// API group of Kubernetes to use three resources, and its code and init
// work are a large share of the pages a small static binary maps in.
type restKube struct {
	core, authn, authz, certs *rest.RESTClient
}

func newRESTKube(cfg *rest.Config) (*restKube, error) {
	// Only the kinds the agent reads or posts: the groups' AddToScheme
	// would register (and reflect over) every kind of core/v1.
	scheme := runtime.NewScheme()
	scheme.AddKnownTypeWithName(coreV1.WithKind("Node"), &kubeNode{})
	scheme.AddKnownTypeWithName(coreV1.WithKind("NodeList"), &kubeNodeList{})
	scheme.AddKnownTypes(authnv1.SchemeGroupVersion, &authnv1.TokenReview{})
	scheme.AddKnownTypes(authzv1.SchemeGroupVersion, &authzv1.SubjectAccessReview{})
	scheme.AddKnownTypeWithName(certificatesV1.WithKind("CertificateSigningRequest"), &kubeCSR{})
	for _, gv := range []schema.GroupVersion{coreV1, authnv1.SchemeGroupVersion, authzv1.SchemeGroupVersion, certificatesV1} {
		metav1.AddToGroupVersion(scheme, gv)
	}
	codecs := serializer.NewCodecFactory(scheme)
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	client := func(gv schema.GroupVersion, apiPath string) (*rest.RESTClient, error) {
		c := rest.CopyConfig(cfg)
		c.GroupVersion, c.APIPath = &gv, apiPath
		c.NegotiatedSerializer = codecs.WithoutConversion()
		// JSON both ways: kubeNode and kubeCSR have no protobuf or CBOR codec.
		c.ContentType, c.AcceptContentTypes = "application/json", "application/json"
		return rest.RESTClientForConfigAndClient(c, httpClient)
	}
	var k restKube
	if k.core, err = client(coreV1, "/api"); err != nil {
		return nil, err
	}
	if k.authn, err = client(authnv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if k.authz, err = client(authzv1.SchemeGroupVersion, "/apis"); err != nil {
		return nil, err
	}
	if k.certs, err = client(certificatesV1, "/apis"); err != nil {
		return nil, err
	}
	return &k, nil
}

func (k *restKube) CreateTokenReview(ctx context.Context, tr *authnv1.TokenReview) (*authnv1.TokenReview, error) {
	out := &authnv1.TokenReview{}
	return out, k.authn.Post().Resource("tokenreviews").Body(tr).Do(ctx).Into(out)
}

func (k *restKube) CreateSubjectAccessReview(ctx context.Context, sar *authzv1.SubjectAccessReview) (*authzv1.SubjectAccessReview, error) {
	out := &authzv1.SubjectAccessReview{}
	return out, k.authz.Post().Resource("subjectaccessreviews").Body(sar).Do(ctx).Into(out)
}

func (k *restKube) CreateCSR(ctx context.Context, csr *kubeCSR) (*kubeCSR, error) {
	out := &kubeCSR{}
	return out, k.certs.Post().Resource("certificatesigningrequests").Body(csr).Do(ctx).Into(out)
}

func (k *restKube) GetCSR(ctx context.Context, name string) (*kubeCSR, error) {
	out := &kubeCSR{}
	return out, k.certs.Get().Resource("certificatesigningrequests").Name(name).Do(ctx).Into(out)
}

func (k *restKube) NodeListWatch() cache.ListerWatcher {
	return cache.NewListWatchFromClient(k.core, "nodes", metav1.NamespaceAll, fields.Everything())
}

// kubeClient is the task that waits for the kubelet's kubeconfig (on nodes
// the kubelet writes it only after TLS bootstrapping), then publishes a
// client for the other tasks and the bearer-token authenticator. The
// kubeconfig names certificate files; client-go reloads those when the
// kubelet rotates them.
type kubeClient struct {
	path  string
	log   *slog.Logger
	sleep func(context.Context, time.Duration) error

	once   sync.Once
	ready  chan struct{}
	client KubeAPI
}

func newKubeClient(path string, log *slog.Logger) *kubeClient {
	return &kubeClient{path: path, log: log, sleep: sleepCtx, ready: make(chan struct{})}
}

// newReadyKubeClient publishes c at once (tests, or a caller with its own client).
func newReadyKubeClient(c KubeAPI) *kubeClient {
	k := &kubeClient{ready: make(chan struct{})}
	k.publish(c)
	return k
}

func (k *kubeClient) publish(c KubeAPI) {
	k.once.Do(func() {
		k.client = c
		close(k.ready)
	})
}

func (k *kubeClient) Name() string { return "kubeconfig" }

// Run waits, backing off from 1 s to 30 s, until the kubeconfig exists,
// then builds the client and returns: the task is done.
func (k *kubeClient) Run(ctx context.Context) error {
	if _, ok := k.Get(); ok {
		return nil
	}
	delay := time.Second
	for waiting := false; ; waiting = true {
		_, err := os.Stat(k.path)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("kubeconfig: %w", err)
		}
		if !waiting {
			k.log.Info("waiting for the kubeconfig (on nodes the kubelet writes it after TLS bootstrapping)", "path", k.path)
		}
		if err := k.sleep(ctx, delay); err != nil {
			return nil
		}
		delay = min(2*delay, 30*time.Second)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", k.path)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", k.path, err)
	}
	cfg.UserAgent = "kubeup-agent"
	c, err := newRESTKube(cfg)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", k.path, err)
	}
	k.publish(c)
	k.log.Info("connected to the API server", "kubeconfig", k.path, "host", cfg.Host)
	return nil
}

// Get returns the client if it is ready.
func (k *kubeClient) Get() (KubeAPI, bool) {
	select {
	case <-k.ready:
		return k.client, true
	default:
		return nil, false
	}
}

// errNoKubeconfig: bearer tokens cannot be checked before the kubeconfig
// exists (a 503).
var errNoKubeconfig = fmt.Errorf("%w: waiting for the kubeconfig", httpauth.ErrNotReady)

// CreateTokenReview makes kubeClient the authenticator's httpauth.Reviewer:
// it asks through the published client, or fails with httpauth.ErrNotReady
// until there is one.
func (k *kubeClient) CreateTokenReview(ctx context.Context, tr *authnv1.TokenReview) (*authnv1.TokenReview, error) {
	c, ok := k.Get()
	if !ok {
		return nil, errNoKubeconfig
	}
	return c.CreateTokenReview(ctx, tr)
}

// CreateSubjectAccessReview: see CreateTokenReview.
func (k *kubeClient) CreateSubjectAccessReview(ctx context.Context, sar *authzv1.SubjectAccessReview) (*authzv1.SubjectAccessReview, error) {
	c, ok := k.Get()
	if !ok {
		return nil, errNoKubeconfig
	}
	return c.CreateSubjectAccessReview(ctx, sar)
}

// Wait blocks until the client is ready or ctx ends.
func (k *kubeClient) Wait(ctx context.Context) (KubeAPI, error) {
	select {
	case <-k.ready:
		return k.client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
