package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"kubeup.dev/kubeup/components/agentconfig"
)

type fakeUnits struct {
	statuses map[string]UnitStatus
	err      error
}

func (f *fakeUnits) Units(_ context.Context, names []string) ([]UnitStatus, error) {
	if f.err != nil {
		return nil, f.err
	}
	out := make([]UnitStatus, len(names))
	for i, n := range names {
		s, ok := f.statuses[n]
		if !ok {
			s = UnitStatus{Name: n, Error: "not loaded"}
		}
		s.Name = n
		out[i] = s
	}
	return out, nil
}

// fakeRoutes is a RouteTable in memory; failVia makes routes through that
// gateway fail as the kernel does for an unreachable next hop.
type fakeRoutes struct {
	mu      sync.Mutex
	routes  map[netip.Prefix]netip.Addr
	failVia netip.Addr
	calls   []string
}

func newFakeRoutes(rs ...Route) *fakeRoutes {
	f := &fakeRoutes{routes: map[netip.Prefix]netip.Addr{}}
	for _, r := range rs {
		f.routes[r.Dst] = r.Via
	}
	return f
}

func (f *fakeRoutes) List() ([]Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Route
	for d, v := range f.routes {
		out = append(out, Route{Dst: d, Via: v})
	}
	sortRoutes(out)
	return out, nil
}

func (f *fakeRoutes) Replace(r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "replace "+r.String())
	if r.Via == f.failVia {
		return errors.New("network is unreachable")
	}
	f.routes[r.Dst] = r.Via
	return nil
}

func (f *fakeRoutes) Delete(r Route) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "delete "+r.String())
	delete(f.routes, r.Dst)
	return nil
}

func (f *fakeRoutes) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

type fakeMasq struct {
	mu    sync.Mutex
	cidrs []netip.Prefix
	err   error
}

func (f *fakeMasq) EnsureMasquerade(c netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cidrs = append(f.cidrs, c)
	return f.err
}

// fakeJournal answers /v1/journal's journalctl with a line, and log
// forwarding's `journalctl --follow` with the JSON lines in follow, then
// blocks as --follow does.
type fakeJournal struct {
	mu     sync.Mutex
	args   [][]string
	follow []string
}

func (f *fakeJournal) run(ctx context.Context, args []string, w io.Writer) error {
	f.mu.Lock()
	f.args = append(f.args, args)
	lines := slices.Clone(f.follow)
	f.mu.Unlock()
	if slices.Contains(args, "--follow") {
		for _, l := range lines {
			if _, err := io.WriteString(w, l+"\n"); err != nil {
				return err
			}
		}
		<-ctx.Done()
		return ctx.Err()
	}
	_, err := io.WriteString(w, "2026-01-01T00:00:00+0000 node-0 kubelet[1]: started\n")
	return err
}

// testClock is time.Now moved on by what a test advanced it.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// testDaemon is a Daemon on fakes, with a real PKI in a temp dir.
type testDaemon struct {
	*Daemon
	clock   *testClock // the daemon's clock
	pki     *testPKI
	cfg     *agentconfig.Config
	routes  *fakeRoutes
	masq    *fakeMasq
	journal *fakeJournal
	// podLogDir is the daemon's /var/log/pods.
	podLogDir string
	control   *fakeControl
	commands  *fakeCommands
	etcd      *fakeSnapshots // the etcd member's snapshot stream
	readds    []string       // etcd member re-adds asked: "name peerURL"
}

// fakeKube is KubeAPI over client-go's fake clientset (test binaries may
// link the full clientset; the agent does not).
type fakeKube struct{ c *fake.Clientset }

func (f fakeKube) CreateTokenReview(ctx context.Context, tr *authnv1.TokenReview) (*authnv1.TokenReview, error) {
	return f.c.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
}

func (f fakeKube) CreateSubjectAccessReview(ctx context.Context, sar *authzv1.SubjectAccessReview) (*authzv1.SubjectAccessReview, error) {
	return f.c.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
}

// NodeListWatch serves the fake clientset's Nodes as the API server's JSON
// reaches the agent: decoded into kubeNode.
func (f fakeKube) NodeListWatch() cache.ListerWatcher {
	nodes := f.c.CoreV1().Nodes()
	return cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			l, err := nodes.List(ctx, o)
			if err != nil {
				return nil, err
			}
			out := &kubeNodeList{ListMeta: l.ListMeta}
			for i := range l.Items {
				out.Items = append(out.Items, *mustKubeNode(&l.Items[i]))
			}
			return out, nil
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			w, err := nodes.Watch(ctx, o)
			if err != nil {
				return nil, err
			}
			return watch.Filter(w, func(e watch.Event) (watch.Event, bool) {
				if n, ok := e.Object.(*corev1.Node); ok {
					e.Object = mustKubeNode(n)
				}
				return e, true
			}), nil
		},
	}, f.c)
}

// CreateCSR and GetCSR go through the fake clientset's certificates/v1
// type by way of JSON, as the agent's requests reach the API server: a
// field name that is not the API's is lost.
func (f fakeKube) CreateCSR(ctx context.Context, csr *kubeCSR) (*kubeCSR, error) {
	var in certificatesv1.CertificateSigningRequest
	convertJSON(csr, &in)
	if in.Name == "" && in.GenerateName != "" {
		// The fake clientset does not generate names.
		in.Name = in.GenerateName + fmt.Sprint(csrSerial.Add(1))
	}
	out, err := f.c.CertificatesV1().CertificateSigningRequests().Create(ctx, &in, metav1.CreateOptions{})
	if err != nil {
		return nil, err
	}
	var k kubeCSR
	convertJSON(out, &k)
	return &k, nil
}

func (f fakeKube) GetCSR(ctx context.Context, name string) (*kubeCSR, error) {
	out, err := f.c.CertificatesV1().CertificateSigningRequests().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	var k kubeCSR
	convertJSON(out, &k)
	return &k, nil
}

var csrSerial atomic.Int64

func convertJSON(in, out any) {
	data, err := json.Marshal(in)
	if err != nil {
		panic(err)
	}
	if err := json.Unmarshal(data, out); err != nil {
		panic(err)
	}
}

func mustKubeNode(n *corev1.Node) *kubeNode {
	data, err := json.Marshal(n)
	if err != nil {
		panic(err)
	}
	var k kubeNode
	if err := json.Unmarshal(data, &k); err != nil {
		panic(err)
	}
	return &k
}

func asKubeNode(t *testing.T, n *corev1.Node) *kubeNode {
	t.Helper()
	return mustKubeNode(n)
}

func newTestDaemon(t *testing.T, kube *fake.Clientset, edit ...func(*agentconfig.Config)) *testDaemon {
	t.Helper()
	pki := newTestPKI(t)
	cfg := validConfig()
	cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile = pki.certFile, pki.keyFile, pki.caFile
	cfg.Listen = "127.0.0.1:0"
	cfg.Network.CNIConfDir = filepath.Join(t.TempDir(), "net.d")
	cfg.Kubeconfig = filepath.Join(t.TempDir(), "kubelet.conf")
	for _, e := range edit {
		e(&cfg)
	}
	td := &testDaemon{clock: &testClock{}, pki: pki, cfg: &cfg, routes: newFakeRoutes(), masq: &fakeMasq{}, journal: &fakeJournal{},
		podLogDir: filepath.Join(t.TempDir(), "pods"), control: &fakeControl{}, commands: &fakeCommands{}, etcd: &fakeSnapshots{}}
	var api KubeAPI
	if kube != nil {
		api = fakeKube{kube}
	}
	d, err := New(&cfg, Options{
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Units: &fakeUnits{statuses: map[string]UnitStatus{
			"kubelet.service": {ActiveState: "active", SubState: "running", Restarts: 2,
				ActiveSince: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
			"containerd.service": {ActiveState: "failed", SubState: "failed"},
		}},
		Journal:  td.journal.run,
		Control:  td.control,
		Command:  td.commands.run,
		Snapshot: td.etcd.open,
		Readd: func(_ context.Context, name, peerURL string) ([]EtcdMemberInfo, error) {
			td.readds = append(td.readds, name+" "+peerURL)
			return []EtcdMemberInfo{{ID: "1", Name: "master-1", PeerURLs: []string{"https://10.77.0.11:2380"}, Started: true},
				{ID: "2", PeerURLs: []string{peerURL}}}, nil
		},
		Routes:       td.routes,
		Masquerade:   td.masq,
		Kube:         api,
		Now:          td.clock.Now,
		Uptime:       func() (time.Duration, error) { return time.Hour, nil },
		StaticPodDir: filepath.Join(t.TempDir(), "manifests"),
		PodLogDir:    td.podLogDir,
	})
	if err != nil {
		t.Fatal(err)
	}
	td.Daemon = d
	return td
}
