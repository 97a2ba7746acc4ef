package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// The addons' Services as the API server's service proxy names them.
const (
	proxyBase      = "/api/v1/namespaces/kube-system/services/"
	UIPath         = proxyBase + "kubeup-ui:http/proxy/"
	PrometheusPath = proxyBase + "prometheus:web/proxy/"
	LogsUIPath     = proxyBase + "victoria-logs:http/proxy/select/vmui/"
)

// Access is an admin connection to a cluster's API server from the host.
type Access struct {
	Config    *rest.Config
	Clientset *kubernetes.Clientset
}

// Connect builds an Access from the cluster's kubeconfig.
func Connect(dataDir, name string) (*Access, error) {
	_, kc, err := Kubeconfig(dataDir, name)
	if err != nil {
		return nil, err
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kc)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Access{Config: cfg, Clientset: cs}, nil
}

// proxyAllowed: the local proxy forwards only reads of the addons' UIs
// (and the query endpoints their pages POST to): it cannot be used to
// change the cluster.
var proxyAllowed = regexp.MustCompile(`^` + regexp.QuoteMeta(proxyBase) + `(kubeup-ui|prometheus|victoria-logs):[a-z]+/proxy(/.*)?$`)

func proxyMethodAllowed(r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return true
	case http.MethodPost:
		p := r.URL.Path
		return strings.Contains(p, "/prometheus:web/proxy/api/v1/") || strings.Contains(p, "/victoria-logs:http/proxy/select/")
	}
	return false
}

// Proxy serves the addons' UIs on a local listener, adding the admin
// credentials (browsers cannot present client certificates), like
// `kubectl proxy` restricted to reads of kube-system's addon Services.
func (a *Access) Proxy(ctx context.Context, l net.Listener) error {
	target, err := url.Parse(a.Config.Host)
	if err != nil {
		return err
	}
	tr, err := rest.TransportFor(a.Config)
	if err != nil {
		return err
	}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = target.Host
		},
		Transport: tr,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			http.Redirect(w, r, UIPath, http.StatusFound)
			return
		}
		if !proxyAllowed.MatchString(r.URL.Path) || !proxyMethodAllowed(r) {
			http.Error(w, "kubeup's local proxy only reads the kubeup-ui, prometheus and victoria-logs services", http.StatusForbidden)
			return
		}
		rp.ServeHTTP(w, r)
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(l); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// PromSample is one series of an instant query.
type PromSample struct {
	Labels map[string]string
	Value  string
}

// Query runs a PromQL instant query through the API server's service proxy.
func (a *Access) Query(ctx context.Context, q string) ([]PromSample, error) {
	return a.QueryAt(ctx, q, time.Time{})
}

// QueryAt runs a PromQL instant query evaluated at a past time (zero: now).
func (a *Access) QueryAt(ctx context.Context, q string, at time.Time) ([]PromSample, error) {
	params := map[string]string{"query": q}
	if !at.IsZero() {
		params["time"] = strconv.FormatInt(at.Unix(), 10)
	}
	body, err := a.Clientset.CoreV1().Services("kube-system").ProxyGet("http", "prometheus", "web", "/api/v1/query", params).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("query Prometheus: %w", err)
	}
	var resp struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  []any             `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("Prometheus answer %q: %w", body, err)
	}
	if resp.Status != "success" {
		return nil, fmt.Errorf("Prometheus: %s", resp.Error)
	}
	var out []PromSample
	for _, r := range resp.Data.Result {
		s := PromSample{Labels: r.Metric}
		if len(r.Value) == 2 {
			s.Value = fmt.Sprint(r.Value[1])
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return fmt.Sprint(out[i].Labels) < fmt.Sprint(out[j].Labels) })
	return out, nil
}

// LogQuery is a search of the log store.
type LogQuery struct {
	Unit, Machine, Pod string
	Since              time.Duration
	Text               string // free LogsQL, ANDed with the rest
	Limit              int
}

// LogsQL renders the query in VictoriaLogs' query language.
func (q LogQuery) LogsQL() string {
	var parts []string
	if q.Since > 0 {
		parts = append(parts, "_time:"+q.Since.String())
	}
	if q.Unit != "" {
		u := q.Unit
		if !strings.Contains(u, ".") {
			u += ".service"
		}
		parts = append(parts, fmt.Sprintf("unit:%q", u))
	}
	if q.Machine != "" {
		parts = append(parts, fmt.Sprintf("machine:%q", q.Machine))
	}
	if q.Pod != "" {
		parts = append(parts, fmt.Sprintf("pod:%q", q.Pod))
	}
	if q.Text != "" {
		parts = append(parts, q.Text)
	}
	if len(parts) == 0 {
		return "*"
	}
	return strings.Join(parts, " ")
}

// LogEntry is one log line from the store.
type LogEntry map[string]string

// Logs searches the log store through the API server's service proxy.
func (a *Access) Logs(ctx context.Context, q LogQuery) ([]LogEntry, error) {
	params := map[string]string{"query": q.LogsQL() + " | sort by (_time)"}
	if q.Limit > 0 {
		params["limit"] = fmt.Sprint(q.Limit)
	}
	body, err := a.Clientset.CoreV1().Services("kube-system").ProxyGet("http", "victoria-logs", "http", "/select/logsql/query", params).DoRaw(ctx)
	if err != nil {
		return nil, fmt.Errorf("query the log store: %w", err)
	}
	return parseJSONLines(bytes.NewReader(body))
}

func parseJSONLines(r io.Reader) ([]LogEntry, error) {
	var out []LogEntry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e LogEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("log store answer %q: %w", line, err)
		}
		out = append(out, e)
	}
	return out, sc.Err()
}
