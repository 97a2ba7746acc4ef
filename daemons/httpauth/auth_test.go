package httpauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
)

// fakeReviewer vouches for token "good" (prometheus, who may get /metrics
// only), counting the reviews; err fails every review.
type fakeReviewer struct {
	mu    sync.Mutex
	calls int
	err   error
}

func (f *fakeReviewer) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func (f *fakeReviewer) CreateTokenReview(_ context.Context, tr *authnv1.TokenReview) (*authnv1.TokenReview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	out := tr.DeepCopy()
	if tr.Spec.Token == "good" {
		out.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{
			Username: "system:serviceaccount:monitoring:prometheus", Groups: []string{"system:serviceaccounts"}}}
	} else {
		out.Status = authnv1.TokenReviewStatus{Error: "token not found"}
	}
	return out, nil
}

func (f *fakeReviewer) CreateSubjectAccessReview(_ context.Context, sar *authzv1.SubjectAccessReview) (*authzv1.SubjectAccessReview, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil {
		return nil, f.err
	}
	out := sar.DeepCopy()
	nr := sar.Spec.NonResourceAttributes
	out.Status.Allowed = sar.Spec.User == "system:serviceaccount:monitoring:prometheus" &&
		nr != nil && nr.Verb == "get" && nr.Path == "/metrics"
	if !out.Status.Allowed {
		out.Status.Reason = "no RBAC policy matched"
	}
	return out, nil
}

// testServer serves "ok" behind Metrics at /metrics*, and behind Admin at
// /admin, with the TLS settings of ServerConfig.
type testServer struct {
	url      string
	pki      *files
	reviewer *fakeReviewer
	now      time.Time
	mu       sync.Mutex
}

func (s *testServer) clock() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.now
}

func (s *testServer) advance(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.now = s.now.Add(d)
}

func newTestServer(t *testing.T) *testServer {
	t.Helper()
	s := &testServer{pki: newFiles(t), reviewer: &fakeReviewer{}, now: time.Now()}
	tf, err := NewTLSFiles(s.pki.certFile, s.pki.keyFile, s.pki.caFile, s.clock)
	if err != nil {
		t.Fatal(err)
	}
	a := NewAuthenticator(tf, s.reviewer, "kubeup-test", s.clock)
	ok := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })
	mux := http.NewServeMux()
	mux.Handle("GET /metrics/", a.Metrics(ok))
	mux.Handle("GET /metrics", a.Metrics(ok))
	mux.Handle("GET /admin", a.Admin(ok))
	// A plain http.Server, as the daemons run it: its certificate comes
	// from ServerConfig's GetCertificate.
	srv := &http.Server{Handler: mux, TLSConfig: tf.ServerConfig(), ErrorLog: log.New(io.Discard, "", 0)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	s.url = "https://" + ln.Addr().String()
	return s
}

type response struct {
	code int
	body string
	auth string // WWW-Authenticate
}

func (s *testServer) get(t *testing.T, path, token string, certs ...tls.Certificate) response {
	t.Helper()
	roots := x509.NewCertPool()
	roots.AddCert(s.pki.ca.cert)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: roots, Certificates: certs, MinVersion: tls.VersionTLS12}}}
	req, _ := http.NewRequest(http.MethodGet, s.url+path, nil)
	switch {
	case strings.Contains(token, " "): // a whole Authorization header
		req.Header.Set("Authorization", token)
	case token != "":
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return response{resp.StatusCode, string(body), resp.Header.Get("WWW-Authenticate")}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	other := newCA(t, "someone else")
	for _, tc := range []struct {
		name  string
		path  string
		token string
		certs []tls.Certificate
		code  int
		body  string
	}{
		{"nothing", "/metrics", "", nil, 401, "a client certificate or a bearer token is required"},
		{"not a bearer", "/metrics", "Basic Z29vZA==", nil, 401, "a client certificate or a bearer token is required"},
		{"foreign client cert", "/metrics", "", []tls.Certificate{other.client(t, "admin", AdminGroup)}, 401, "client certificate refused"},
		{"cluster client cert", "/metrics", "", []tls.Certificate{s.pki.ca.client(t, "prometheus")}, 200, "ok"},
		{"cluster client cert and a bad token", "/metrics", "bad", []tls.Certificate{s.pki.ca.client(t, "prometheus")}, 200, "ok"},
		{"valid token", "/metrics", "good", nil, 200, "ok"},
		{"valid token, lower-case scheme", "/metrics", "bearer good", nil, 200, "ok"},
		{"empty token", "/metrics", "Bearer  ", nil, 401, "a client certificate or a bearer token is required"},
		{"valid token, other path", "/metrics/containerd", "good", nil, 403,
			`"system:serviceaccount:monitoring:prometheus" may not get /metrics/containerd: no RBAC policy matched`},
		{"invalid token", "/metrics", "bad", nil, 401, "invalid bearer token: token not found"},
	} {
		r := s.get(t, tc.path, tc.token, tc.certs...)
		if r.code != tc.code || !strings.Contains(r.body, tc.body) {
			t.Errorf("%s: got %d %.200q, want %d with %q", tc.name, r.code, r.body, tc.code, tc.body)
		}
		if want := `Bearer realm="kubeup-test"`; r.code == 401 && r.auth != want {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tc.name, r.auth, want)
		}
		if r.code != 401 && r.auth != "" {
			t.Errorf("%s: %d with WWW-Authenticate %q", tc.name, r.code, r.auth)
		}
	}

	// Decisions are cached: asking again costs no review.
	before := s.reviewer.count()
	for _, tok := range []string{"good", "bad"} {
		s.get(t, "/metrics", tok)
	}
	s.get(t, "/metrics/containerd", "good")
	if n := s.reviewer.count(); n != before {
		t.Errorf("%d reviews for cached decisions", n-before)
	}
	// ... for a minute.
	s.advance(2 * DecisionTTL)
	s.get(t, "/metrics", "good")
	if n := s.reviewer.count(); n != before+2 {
		t.Errorf("expired decision: %d reviews, want 2", n-before)
	}
}

// Failures to ask the API server are 503s, and not cached.
func TestMetricsReviewerDown(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	for _, tc := range []struct {
		err  error
		body string
	}{
		{fmt.Errorf("%w: waiting for the kubeconfig", ErrNotReady), "cannot check bearer tokens yet: waiting for the kubeconfig\n"},
		{errors.New("connection refused"), "token review: connection refused\n"},
	} {
		s.reviewer.mu.Lock()
		s.reviewer.err = tc.err
		s.reviewer.mu.Unlock()
		if r := s.get(t, "/metrics", "good"); r.code != http.StatusServiceUnavailable || r.body != tc.body {
			t.Errorf("%v: got %d %q, want 503 %q", tc.err, r.code, r.body, tc.body)
		}
	}
	s.reviewer.mu.Lock()
	s.reviewer.err = nil
	s.reviewer.mu.Unlock()
	if r := s.get(t, "/metrics", "good"); r.code != 200 {
		t.Errorf("reviewer back: got %d %q", r.code, r.body)
	}
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	for _, tc := range []struct {
		name  string
		token string
		certs []tls.Certificate
		code  int
		body  string
	}{
		{"anonymous", "", nil, 401, "a client certificate in group system:masters is required"},
		{"a token", "good", nil, 401, "a client certificate in group system:masters is required"},
		{"foreign admin", "", []tls.Certificate{newCA(t, "other").client(t, "admin", AdminGroup)}, 401, "client certificate refused"},
		{"non-admin", "", []tls.Certificate{s.pki.ca.client(t, "prometheus", "monitoring")}, 403,
			`"prometheus" is not in group system:masters`},
		{"admin", "", []tls.Certificate{s.pki.ca.client(t, "kubeup-admin", AdminGroup)}, 200, "ok"},
	} {
		r := s.get(t, "/admin", tc.token, tc.certs...)
		if r.code != tc.code || !strings.Contains(r.body, tc.body) {
			t.Errorf("%s: got %d %q, want %d with %q", tc.name, r.code, r.body, tc.code, tc.body)
		}
		if r.code == 401 && r.auth == "" {
			t.Errorf("%s: 401 without WWW-Authenticate", tc.name)
		}
	}
	if n := s.reviewer.count(); n != 0 {
		t.Errorf("admin endpoints asked for %d reviews", n)
	}
}

// The cache holds at most maxDecisions: expired entries go first, then all.
func TestDecisionCacheBound(t *testing.T) {
	a := NewAuthenticator(nil, nil, "", nil)
	now := time.Now()
	for i := range maxDecisions {
		a.remember(fmt.Sprint(i), decision{code: 200}, now)
	}
	a.remember("late", decision{code: 200}, now.Add(DecisionTTL))
	if n := len(a.cache); n != 1 {
		t.Errorf("after expiry: %d entries, want 1", n)
	}
	for i := range maxDecisions {
		a.remember(fmt.Sprint(i), decision{code: 200}, now.Add(DecisionTTL))
	}
	if n := len(a.cache); n != 1 {
		t.Errorf("when full of live entries: %d entries, want 1 (start over)", n)
	}
}

// While the API server cannot be asked, a recent "allowed" still stands
// (metrics matter most then); a refusal or an old "allowed" does not.
func TestMetricsStaleWhileReviewerDown(t *testing.T) {
	t.Parallel()
	s := newTestServer(t)
	if r := s.get(t, "/metrics", "good"); r.code != 200 {
		t.Fatalf("good token: %d %q", r.code, r.body)
	}
	s.get(t, "/metrics", "bad")
	s.advance(DecisionTTL + time.Second) // both decisions expired
	s.reviewer.mu.Lock()
	s.reviewer.err = errors.New("connection refused")
	s.reviewer.mu.Unlock()
	if r := s.get(t, "/metrics", "good"); r.code != 200 {
		t.Errorf("allowed %s ago, reviewer down: %d %q, want 200", DecisionTTL, r.code, r.body)
	}
	if r := s.get(t, "/metrics", "bad"); r.code != http.StatusServiceUnavailable {
		t.Errorf("refused before, reviewer down: %d %q, want 503", r.code, r.body)
	}
	s.advance(StaleTTL)
	if r := s.get(t, "/metrics", "good"); r.code != http.StatusServiceUnavailable {
		t.Errorf("allowed %s ago, reviewer down: %d %q, want 503", StaleTTL+DecisionTTL, r.code, r.body)
	}
}
