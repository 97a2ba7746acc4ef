package addonmanager

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"kubeup.dev/kubeup/daemons/httpauth"
	"kubeup.dev/kubeup/test/kubetest"
)

func TestServer(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca := kubetest.NewCA(t, "kubernetes")
	servingCert, servingKey := ca.Issue(t, pkix.Name{CommonName: "kubeup-agent"}, x509.ExtKeyUsageServerAuth, time.Time{})
	for name, data := range map[string][]byte{"ca.crt": ca.PEM, "tls.crt": servingCert, "tls.key": servingKey} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	files, err := httpauth.NewTLSFiles(filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt"), time.Now)
	if err != nil {
		t.Fatal(err)
	}

	client := fake.NewClientset()
	client.PrependReactor("create", "tokenreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		tr := a.(k8stesting.CreateAction).GetObject().(*authnv1.TokenReview)
		switch tr.Spec.Token {
		case "prometheus-token":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "system:serviceaccount:monitoring:prometheus"}}
		case "bob-token":
			tr.Status = authnv1.TokenReviewStatus{Authenticated: true, User: authnv1.UserInfo{Username: "bob"}}
		}
		return true, tr, nil
	})
	client.PrependReactor("create", "subjectaccessreviews", func(a k8stesting.Action) (bool, runtime.Object, error) {
		sar := a.(k8stesting.CreateAction).GetObject().(*authzv1.SubjectAccessReview)
		na := sar.Spec.NonResourceAttributes
		sar.Status.Allowed = sar.Spec.User == "system:serviceaccount:monitoring:prometheus" && na != nil && na.Path == "/metrics" && na.Verb == "get"
		return true, sar, nil
	})
	auth := newAuthenticator(files, client)
	var health error
	m := NewMetrics()
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	srv := &http.Server{Handler: Handler(func() error { return health }, m, auth.Metrics, log), TLSConfig: files.ServerConfig(),
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	url := "https://" + ln.Addr().String()

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.PEM)
	get := func(path, token string, cert *tls.Certificate) (int, string) {
		t.Helper()
		cfg := &tls.Config{RootCAs: roots}
		if cert != nil {
			cfg.Certificates = []tls.Certificate{*cert}
		}
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest(http.MethodGet, url+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	keyPair := func(ca *kubetest.CA) *tls.Certificate {
		kp := ca.TLSCertificate(t, pkix.Name{CommonName: "kubeup-admin"}, x509.ExtKeyUsageClientAuth, time.Time{})
		return &kp
	}

	if code, body := get("/healthz", "", nil); code != http.StatusOK || body != "ok\n" {
		t.Errorf("/healthz = %d %q, want 200 ok", code, body)
	}
	health = errors.New("last sync ended 3m0s ago")
	if code, body := get("/healthz", "", nil); code != http.StatusServiceUnavailable || !strings.Contains(body, "3m0s") {
		t.Errorf("unhealthy /healthz = %d %q, want 503 with the reason", code, body)
	}

	for _, c := range []struct {
		name  string
		token string
		cert  *tls.Certificate
		want  int
	}{
		{"anonymous", "", nil, http.StatusUnauthorized},
		{"client certificate", "", keyPair(ca), http.StatusOK},
		{"client certificate from another CA", "", keyPair(kubetest.NewCA(t, "other")), http.StatusUnauthorized},
		{"authorised token", "prometheus-token", nil, http.StatusOK},
		{"unauthorised token", "bob-token", nil, http.StatusForbidden},
		{"invalid token", "nope", nil, http.StatusUnauthorized},
	} {
		code, body := get("/metrics", c.token, c.cert)
		if code != c.want {
			t.Errorf("%s: /metrics = %d (%s), want %d", c.name, code, strings.TrimSpace(body), c.want)
		}
		if code == http.StatusOK && !strings.Contains(body, "kubeup_addon_last_successful_sync_timestamp_seconds") {
			t.Errorf("%s: /metrics lacks the addon metrics:\n%s", c.name, body)
		}
	}
}
