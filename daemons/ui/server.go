package ui

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordinationlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Config is the UI server's configuration (the `kubeup-addons ui` flags).
type Config struct {
	// Listen is the HTTP listen address, e.g. ":8080".
	Listen string
	// Kubeconfig is for running outside the cluster; empty means the pod's
	// ServiceAccount (rest.InClusterConfig).
	Kubeconfig string
	// ClusterName titles the page.
	ClusterName string
	// PrometheusURL is Prometheus' base URL for the HTTP API; empty
	// without the monitoring addon.
	PrometheusURL string
	// MetricsUIPath and LogsUIPath are absolute paths on the API server,
	// through its service proxy, of the metrics and log UIs; empty hides
	// the link.
	MetricsUIPath string
	LogsUIPath    string
	// Refresh is the page's auto-refresh period; 0 turns it off.
	Refresh time.Duration
}

// Default paths of the addons' UIs through the API server's service proxy
// (see ProxyPath): Prometheus' web UI, and VictoriaLogs' vmui.
const (
	DefaultMetricsUIPath = "/api/v1/namespaces/kube-system/services/prometheus:web/proxy/"
	DefaultLogsUIPath    = "/api/v1/namespaces/kube-system/services/victoria-logs:http/proxy/select/vmui/"
)

// Validate returns every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if c.Listen == "" {
		errs = append(errs, errors.New("listen: empty"))
	}
	if c.PrometheusURL != "" {
		if u, err := url.Parse(c.PrometheusURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			errs = append(errs, fmt.Errorf("prometheus: %q is not an http(s) URL", c.PrometheusURL))
		}
	}
	for _, f := range []struct{ name, path string }{{"metrics-ui-path", c.MetricsUIPath}, {"logs-ui-path", c.LogsUIPath}} {
		if f.path != "" && (!strings.HasPrefix(f.path, "/") || strings.ContainsAny(f.path, "?#")) {
			errs = append(errs, fmt.Errorf("%s: %q is not an absolute path", f.name, f.path))
		}
	}
	if c.Refresh < 0 {
		errs = append(errs, fmt.Errorf("refresh: %s is negative", c.Refresh))
	}
	return errors.Join(errs...)
}

// prometheusTimeout bounds the page's Prometheus queries: an unreachable
// Prometheus must not hold the page.
const prometheusTimeout = 5 * time.Second

// Server serves the UI from informer caches and Prometheus.
type Server struct {
	cfg     Config
	factory informers.SharedInformerFactory
	// leaseFactory watches LeaderNamespace alone: the UI may read Leases
	// there and nowhere else.
	leaseFactory informers.SharedInformerFactory
	nodes        corelisters.NodeLister
	pods         corelisters.PodLister
	events       corelisters.EventLister
	leases       coordinationlisters.LeaseNamespaceLister
	synced       []cache.InformerSynced
	prom         promv1.API // nil without PrometheusURL
	now          func() time.Time
	page         *template.Template
}

//go:embed page.html
var pageTemplate string

// NewServer prepares a Server reading through client; call Start to fill
// its caches. now is the clock (nil: time.Now).
func NewServer(client kubernetes.Interface, cfg Config, now func() time.Time) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("ui config: %w", err)
	}
	if now == nil {
		now = time.Now
	}
	tmpl, err := template.New("page").Parse(pageTemplate)
	if err != nil {
		return nil, fmt.Errorf("parse page template: %w", err)
	}
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(stripManagedFields))
	leaseFactory := informers.NewSharedInformerFactoryWithOptions(client, 0,
		informers.WithNamespace(LeaderNamespace), informers.WithTransform(stripManagedFields))
	core := factory.Core().V1()
	leases := leaseFactory.Coordination().V1().Leases()
	s := &Server{
		cfg: cfg, factory: factory, leaseFactory: leaseFactory, now: now, page: tmpl,
		nodes: core.Nodes().Lister(), pods: core.Pods().Lister(), events: core.Events().Lister(),
		leases: leases.Lister().Leases(LeaderNamespace),
		synced: []cache.InformerSynced{core.Nodes().Informer().HasSynced, core.Pods().Informer().HasSynced,
			core.Events().Informer().HasSynced, leases.Informer().HasSynced},
	}
	if cfg.PrometheusURL != "" {
		pc, err := api.NewClient(api.Config{Address: cfg.PrometheusURL, Client: &http.Client{Timeout: prometheusTimeout}})
		if err != nil {
			return nil, fmt.Errorf("prometheus client: %w", err)
		}
		s.prom = promv1.NewAPI(pc)
	}
	return s, nil
}

// stripManagedFields keeps the caches small: the UI never shows them.
func stripManagedFields(obj any) (any, error) {
	if o, ok := obj.(metav1.Object); ok {
		o.SetManagedFields(nil)
	}
	return obj, nil
}

// Start starts the informers; they stop when ctx ends.
func (s *Server) Start(ctx context.Context) {
	s.factory.Start(ctx.Done())
	s.leaseFactory.Start(ctx.Done())
}

// Shutdown waits for the informers to stop after their context ended.
func (s *Server) Shutdown() {
	s.factory.Shutdown()
	s.leaseFactory.Shutdown()
}

// WaitForSync waits until the caches hold a first complete list, or ctx
// ends (false).
func (s *Server) WaitForSync(ctx context.Context) bool {
	return cache.WaitForCacheSync(ctx.Done(), s.synced...)
}

func (s *Server) hasSynced() bool {
	for _, f := range s.synced {
		if !f() {
			return false
		}
	}
	return true
}

// Overview is the cluster's state now, from the caches and Prometheus.
func (s *Server) Overview(ctx context.Context) *Overview {
	now := s.now()
	// Listers read the caches; they fail only for a bad selector.
	nodes, _ := s.nodes.List(labels.Everything())
	pods, _ := s.pods.List(labels.Everything())
	events, _ := s.events.List(labels.Everything())
	leases, _ := s.leases.List(labels.Everything())
	o := &Overview{
		GeneratedAt: now, Synced: s.hasSynced(),
		Nodes: NodeRows(nodes, now), ControlPlane: LeaderRows(leases, now),
		Pods: PodRows(pods, now), Events: EventRows(events, now),
		Machines: []Machine{},
	}
	if s.prom == nil {
		o.MetricsError = "Component health is not available: no Prometheus is configured (the monitoring addon is off)."
		return o
	}
	ctx, cancel := context.WithTimeout(ctx, prometheusTimeout)
	defer cancel()
	machines, err := queryMachines(ctx, s.prom)
	if err != nil {
		var perr *promv1.Error
		if errors.As(err, &perr) {
			o.MetricsError = fmt.Sprintf("Component health is not available: Prometheus at %s answered with an error: %v", s.cfg.PrometheusURL, err)
		} else {
			o.MetricsError = fmt.Sprintf("Component health is not available: Prometheus at %s is unreachable: %v", s.cfg.PrometheusURL, err)
		}
		return o
	}
	o.Machines = withSilentNodes(machines, o.Nodes)
	return o
}

// Handler serves, for GET and HEAD only (anything else is 405):
//
//	/              the page
//	/api/overview  the overview as JSON
//	/healthz       200 once the caches have synced, 503 before
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.servePage)
	mux.HandleFunc("GET /api/overview", s.serveJSON)
	mux.HandleFunc("GET /healthz", s.serveHealthz)
	return readOnly(mux)
}

// readOnly refuses every method but GET and HEAD, and sets headers that
// keep the page from being framed or running anything.
func readOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'none'; base-uri 'none'")
		h.Set("Cache-Control", "no-store")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the kubeup UI is read-only: only GET and HEAD are allowed", http.StatusMethodNotAllowed)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// pageData is what the template renders.
type pageData struct {
	*Overview
	ClusterName string
	Links       Links
	Refresh     int // seconds
}

func (p pageData) NodesReady() int {
	n := 0
	for _, node := range p.Nodes {
		if node.Ready == "True" {
			n++
		}
	}
	return n
}

func (p pageData) PodsNotOK() int {
	n := 0
	for _, pod := range p.Pods {
		if !pod.OK {
			n++
		}
	}
	return n
}

// MachineGraph links to the metrics UI's graph of a machine's unit states.
func (p pageData) MachineGraph(machine string) string {
	return p.Links.metricsGraph(fmt.Sprintf("kubeup_unit_state{machine=%q} == 1", machine))
}

// RenderPage writes the page for o as seen at pagePath.
func (s *Server) RenderPage(w io.Writer, o *Overview, pagePath string) error {
	data := pageData{Overview: o, ClusterName: s.cfg.ClusterName, Links: pageLinks(pagePath, s.cfg),
		Refresh: int(s.cfg.Refresh / time.Second)}
	if err := s.page.Execute(w, data); err != nil {
		return fmt.Errorf("render page: %w", err)
	}
	return nil
}

func (s *Server) servePage(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := s.RenderPage(&buf, s.Overview(r.Context()), pagePath(r)); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Write(buf.Bytes())
}

func (s *Server) serveJSON(w http.ResponseWriter, r *http.Request) {
	data, err := json.MarshalIndent(s.Overview(r.Context()), "", "  ")
	if err != nil {
		http.Error(w, fmt.Sprintf("encode overview: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(append(data, '\n'))
}

func (s *Server) serveHealthz(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if !s.hasSynced() {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "informer caches not synced yet\n")
		return
	}
	io.WriteString(w, "ok\n")
}
