package agent

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/httpauth"
)

// serve starts the daemon's handler on an httptest TLS server with the
// daemon's own TLS settings.
func serve(t *testing.T, td *testDaemon) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(td.Handler())
	srv.TLS = td.tls.ServerConfig()
	// httptest adds its own certificate when none is set; give it ours.
	pair, err := tls.LoadX509KeyPair(td.pki.certFile, td.pki.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	srv.TLS.Certificates = []tls.Certificate{pair}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

type client struct {
	t    *testing.T
	base string
	http *http.Client
}

func newClient(t *testing.T, srv *httptest.Server, cfg *tls.Config) *client {
	return &client{t: t, base: srv.URL, http: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
}

func (c *client) get(path, token string) (int, string, http.Header) {
	c.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, c.base+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), resp.Header
}

// fakeReviews answers TokenReviews (token "good" is prometheus) and
// SubjectAccessReviews (prometheus may get /metrics only), counting calls.
func fakeReviews() (*fake.Clientset, *atomic.Int32) {
	var calls atomic.Int32
	c := fake.NewClientset()
	c.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview).DeepCopy()
		if tr.Spec.Token == "good" {
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{
				Username: "system:serviceaccount:monitoring:prometheus", Groups: []string{"system:serviceaccounts"}}}
		} else {
			tr.Status = authnv1.TokenReviewStatus{Error: "token not found"}
		}
		return true, tr, nil
	})
	c.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		calls.Add(1)
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview).DeepCopy()
		nr := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = sar.Spec.User == "system:serviceaccount:monitoring:prometheus" &&
			nr != nil && nr.Verb == "get" && nr.Path == "/metrics"
		if !sar.Status.Allowed {
			sar.Status.Reason = "no RBAC policy matched"
		}
		return true, sar, nil
	})
	return c, &calls
}

func TestHealthzNeedsNoAuth(t *testing.T) {
	td := newTestDaemon(t, nil)
	srv := serve(t, td)
	code, body, _ := newClient(t, srv, td.pki.clientTLS(t)).get("/healthz", "")
	if code != 200 || body != "ok" {
		t.Errorf("got %d %q", code, body)
	}
}

func TestMetricsAuth(t *testing.T) {
	t.Parallel()
	kube, calls := fakeReviews()
	td := newTestDaemon(t, kube)
	srv := serve(t, td)
	anon := newClient(t, srv, td.pki.clientTLS(t))
	other := newTestCA(t, "someone else")
	for _, tc := range []struct {
		name   string
		client *client
		path   string
		token  string
		code   int
		body   string
	}{
		{"nothing", anon, "/metrics", "", 401, "client certificate or a bearer token"},
		{"foreign client cert", newClient(t, srv, td.pki.clientTLS(t, other.tlsCert(t, "admin", []string{AdminGroup}))),
			"/metrics", "", 401, "client certificate refused"},
		{"cluster client cert", newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", nil))),
			"/metrics", "", 200, `kubeup_unit_state{state="active",unit="kubelet.service"} 1`},
		{"valid token", anon, "/metrics", "good", 200, "kubeup_pod_network_ready 0"},
		{"valid token, other path", anon, "/metrics/containerd", "good", 403, "may not get /metrics/containerd"},
		{"invalid token", anon, "/metrics", "bad", 401, "invalid bearer token: token not found"},
	} {
		code, body, hdr := tc.client.get(tc.path, tc.token)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: got %d %.200q, want %d with %q", tc.name, code, body, tc.code, tc.body)
		}
		if code == 401 && hdr.Get("WWW-Authenticate") == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}

	// Decisions are cached: asking again costs no review.
	before := calls.Load()
	for _, tok := range []string{"good", "bad"} {
		anon.get("/metrics", tok)
	}
	anon.get("/metrics/containerd", "good")
	if n := calls.Load(); n != before {
		t.Errorf("%d reviews for cached decisions", n-before)
	}
	// ... for a minute.
	td.clock.Advance(2 * httpauth.DecisionTTL)
	anon.get("/metrics", "good")
	if n := calls.Load(); n != before+2 {
		t.Errorf("expired decision: %d reviews, want 2", n-before)
	}
}

func TestBearerWithoutKubeconfig(t *testing.T) {
	td := newTestDaemon(t, nil) // kubeconfig never appears
	srv := serve(t, td)
	code, body, _ := newClient(t, srv, td.pki.clientTLS(t)).get("/metrics", "good")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "kubeconfig") {
		t.Errorf("got %d %q", code, body)
	}
}

func TestMetricsContent(t *testing.T) {
	td := newTestDaemon(t, nil)
	srv := serve(t, td)
	c := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", nil)))
	_, body, _ := c.get("/metrics", "")
	for _, want := range []string{
		`kubeup_systemd_up 1`,
		`kubeup_unit_state{state="active",unit="kubelet.service"} 1`,
		`kubeup_unit_state{state="failed",unit="kubelet.service"} 0`,
		`kubeup_unit_state{state="failed",unit="containerd.service"} 1`,
		`kubeup_unit_sub_state{sub_state="running",unit="kubelet.service"} 1`,
		`kubeup_unit_restarts_total{unit="kubelet.service"} 2`,
		`kubeup_unit_active_since_seconds{unit="kubelet.service"} 1.7672256e+09`,
		`kubeup_unit_read_error{unit="kubelet.service"} 0`,
		`kubeup_pod_network_routes 0`,
		`kubeup_certificate_scan_errors 0`,
		`go_goroutines `,
		`process_resident_memory_bytes `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}

	// systemd unreachable: reported, not fatal.
	td.units.(*fakeUnits).err = io.ErrUnexpectedEOF
	code, body, _ := c.get("/metrics", "")
	if code != 200 || !strings.Contains(body, "kubeup_systemd_up 0") || strings.Contains(body, "kubeup_unit_state{") {
		t.Errorf("without systemd: %d\n%s", code, body)
	}
}

func TestScrapePassthrough(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/broken" {
			http.Error(w, "oops", 500)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		io.WriteString(w, "containerd_up 1\n")
	}))
	defer upstream.Close()
	td := newTestDaemon(t, nil, func(c *agentconfig.Config) {
		c.Scrape = map[string]string{"containerd": upstream.URL + "/v1/metrics", "broken": upstream.URL + "/broken"}
	})
	srv := serve(t, td)
	c := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", nil)))
	code, body, hdr := c.get("/metrics/containerd", "")
	if code != 200 || body != "containerd_up 1\n" || hdr.Get("Content-Type") != "text/plain; version=0.0.4" {
		t.Errorf("got %d %q %q", code, body, hdr.Get("Content-Type"))
	}
	if code, body, _ := c.get("/metrics/broken", ""); code != http.StatusBadGateway || !strings.Contains(body, "oops") {
		t.Errorf("broken upstream: %d %q", code, body)
	}
	if code, _, _ := c.get("/metrics/etcd", ""); code != http.StatusNotFound {
		t.Errorf("unknown target: %d", code)
	}
	if code, _, _ := newClient(t, srv, td.pki.clientTLS(t)).get("/metrics/containerd", ""); code != 401 {
		t.Errorf("anonymous scrape: %d", code)
	}
}

func TestAdminEndpoints(t *testing.T) {
	td := newTestDaemon(t, nil)
	srv := serve(t, td)
	anon := newClient(t, srv, td.pki.clientTLS(t))
	user := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", []string{"monitoring"})))
	admin := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup})))
	for _, path := range []string{"/v1/status", "/v1/journal?unit=kubelet.service", "/v1/config", "/v1/sockets"} {
		if code, _, _ := anon.get(path, ""); code != 401 {
			t.Errorf("%s anonymous: %d", path, code)
		}
		if code, _, _ := anon.get(path, "good"); code != 401 {
			t.Errorf("%s with a token: %d", path, code)
		}
		if code, body, _ := user.get(path, ""); code != 403 || !strings.Contains(body, AdminGroup) {
			t.Errorf("%s non-admin: %d %q", path, code, body)
		}
	}

	code, body, hdr := admin.get("/v1/status", "")
	if code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("status: %d %s", code, body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Machine != "node-0" || st.Role != agentconfig.RoleNode || st.UptimeSeconds != 3600 || len(st.Units) != 2 ||
		st.Units[1].Restarts != 2 || st.Units[1].ActiveState != "active" || len(st.Tasks) != 4 {
		t.Errorf("status:\n%s", body)
	}
}

// /v1/sockets and /v1/config answer an admin with JSON.
func TestInspectEndpoints(t *testing.T) {
	td := newTestDaemon(t, nil)
	td.Daemon.procNetDir = t.TempDir()
	os.WriteFile(filepath.Join(td.Daemon.procNetDir, "tcp"), []byte(procTable([3]string{"0.0.0.0:22", "0.0.0.0:0", "0A"})), 0o644)
	srv := serve(t, td)
	admin := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup})))
	code, body, _ := admin.get("/v1/sockets", "")
	if code != 200 || strings.TrimSpace(body) != `[{"proto":"tcp","address":"0.0.0.0:22"}]` {
		t.Errorf("sockets: %d %s", code, body)
	}
	code, body, _ = admin.get("/v1/config", "")
	var mc MachineConfig
	if err := json.Unmarshal([]byte(body), &mc); code != 200 || err != nil {
		t.Errorf("config: %d %v %s", code, err, body)
	}
}

func TestJournal(t *testing.T) {
	td := newTestDaemon(t, nil)
	srv := serve(t, td)
	admin := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup})))
	for _, q := range []string{
		"unit=sshd.service",
		"unit=kubelet.service%20-f",
		"unit=",
		"unit=kubelet.service&lines=0",
		"unit=kubelet.service&lines=lots",
		"unit=kubelet.service&since=yesterday",
	} {
		if code, _, _ := admin.get("/v1/journal?"+q, ""); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	if len(td.journal.args) != 0 {
		t.Fatalf("journalctl ran for refused requests: %v", td.journal.args)
	}
	code, body, _ := admin.get("/v1/journal?unit=kubelet.service&lines=20&since=2026-01-01T01:00:00%2B01:00", "")
	if code != 200 || !strings.Contains(body, "kubelet[1]: started") {
		t.Fatalf("journal: %d %q", code, body)
	}
	want := "-u kubelet.service -n 20 -o short-iso --no-pager --since=@1767225600"
	if got := strings.Join(td.journal.args[0], " "); got != want {
		t.Errorf("journalctl %s\nwant       %s", got, want)
	}
}

// A proxied scrape waits as long as Prometheus says it waits, within
// bounds, and no longer.
func TestScrapeTimeoutFromPrometheus(t *testing.T) {
	t.Parallel()
	for h, want := range map[string]time.Duration{
		"": scrapeTimeout, "45": 45 * time.Second, "0.5": 500 * time.Millisecond, "1000": maxScrapeTimeout,
		"-1": scrapeTimeout, "0": scrapeTimeout, "NaN": scrapeTimeout, "soon": scrapeTimeout,
	} {
		r := httptest.NewRequest(http.MethodGet, "/metrics/containerd", nil)
		if h != "" {
			r.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", h)
		}
		if got := scrapeTimeoutOf(r); got != want {
			t.Errorf("header %q: %s, want %s", h, got, want)
		}
	}

	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer upstream.Close()
	defer close(release)
	td := newTestDaemon(t, nil, func(c *agentconfig.Config) {
		c.Scrape = map[string]string{"containerd": upstream.URL}
	})
	srv := serve(t, td)
	c := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", nil)))
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/metrics/containerd", nil)
	req.Header.Set("X-Prometheus-Scrape-Timeout-Seconds", "0.3")
	start := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if took := time.Since(start); resp.StatusCode != http.StatusBadGateway || took > 5*time.Second {
		t.Errorf("a scrape that outlives Prometheus's 0.3 s: %d after %s, want 502 soon after 0.3 s", resp.StatusCode, took)
	}
}
