package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"

	"kubeup.dev/kubeup/components"
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

type fakeJournal struct {
	args [][]string
}

func (f *fakeJournal) run(_ context.Context, args []string, w io.Writer) error {
	f.args = append(f.args, args)
	_, err := io.WriteString(w, "2026-01-01T00:00:00+0000 node-0 kubelet[1]: started\n")
	return err
}

// testDaemon is a Daemon on fakes, with a real PKI in a temp dir.
type testDaemon struct {
	*Daemon
	pki     *testPKI
	cfg     *components.AgentConfig
	routes  *fakeRoutes
	masq    *fakeMasq
	journal *fakeJournal
}

func newTestDaemon(t *testing.T, kube kubernetes.Interface, edit ...func(*components.AgentConfig)) *testDaemon {
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
	td := &testDaemon{pki: pki, cfg: &cfg, routes: newFakeRoutes(), masq: &fakeMasq{}, journal: &fakeJournal{}}
	d, err := New(&cfg, Options{
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Units: &fakeUnits{statuses: map[string]UnitStatus{
			"kubelet.service": {ActiveState: "active", SubState: "running", Restarts: 2,
				ActiveSince: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)},
			"containerd.service": {ActiveState: "failed", SubState: "failed"},
		}},
		Journal:    td.journal.run,
		Routes:     td.routes,
		Masquerade: td.masq,
		Kube:       kube,
		Uptime:       func() (time.Duration, error) { return time.Hour, nil },
		StaticPodDir: filepath.Join(t.TempDir(), "manifests"),
	})
	if err != nil {
		t.Fatal(err)
	}
	td.Daemon = d
	return td
}
