package addonmanager

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// The metrics endpoint's authentication mirrors components/agent's
// (auth.go, tlsFiles.go), which is unexported: a client certificate from
// the cluster CA, or a bearer token the API server authenticates
// (TokenReview) and authorises for a GET of the path (SubjectAccessReview),
// cached a minute both ways. The two are candidates for one shared package.
const (
	decisionTTL    = time.Minute
	maxDecisions   = 512
	reviewTimeout  = 10 * time.Second
	tlsReloadCheck = 10 * time.Second
)

// Handler serves the manager's HTTPS endpoints:
//
//	GET /healthz   200 when the last sync ended within twice the resync period; no auth
//	GET /metrics   Prometheus metrics; client certificate or bearer token
func Handler(healthy func() error, m *Metrics, auth func(http.Handler) http.Handler, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := healthy(); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, err.Error()+"\n")
			return
		}
		io.WriteString(w, "ok\n")
	})
	mux.Handle("GET /metrics", auth(promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	})))
	return mux
}

// tlsFiles is the serving certificate and client CA, re-read when their
// files change so certificate rotation needs no restart.
type tlsFiles struct {
	certFile, keyFile, caFile string

	mu      sync.Mutex
	checked time.Time
	stamps  [3]time.Time
	cert    *tls.Certificate
	pool    *x509.CertPool
}

func newTLSFiles(certFile, keyFile, caFile string) (*tlsFiles, error) {
	t := &tlsFiles{certFile: certFile, keyFile: keyFile, caFile: caFile}
	if err := t.reload(true); err != nil {
		return nil, err
	}
	return t, nil
}

// reload re-reads the files when they changed; on error the loaded ones stay.
func (t *tlsFiles) reload(force bool) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !force && time.Since(t.checked) < tlsReloadCheck {
		return nil
	}
	t.checked = time.Now()
	var stamps [3]time.Time
	for i, f := range []string{t.certFile, t.keyFile, t.caFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		stamps[i] = fi.ModTime()
	}
	if !force && stamps == t.stamps {
		return nil
	}
	cert, err := tls.LoadX509KeyPair(t.certFile, t.keyFile)
	if err != nil {
		return fmt.Errorf("tls: serving certificate: %w", err)
	}
	pem, err := os.ReadFile(t.caFile)
	if err != nil {
		return fmt.Errorf("tls: client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return fmt.Errorf("tls: client CA %s: no PEM certificate", t.caFile)
	}
	t.cert, t.pool, t.stamps = &cert, pool, stamps
	return nil
}

func (t *tlsFiles) current() (*tls.Certificate, *x509.CertPool) {
	_ = t.reload(false) // a failed reload keeps what was loaded
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.cert, t.pool
}

// serverConfig asks for a client certificate without requiring one; the
// handler verifies it, so a refused certificate gets a 401 saying why.
func (t *tlsFiles) serverConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequestClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c, _ := t.current()
			return c, nil
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// verifyClient returns the verified client certificate, nil when none was
// presented.
func (t *tlsFiles) verifyClient(state *tls.ConnectionState) (*x509.Certificate, error) {
	if state == nil || len(state.PeerCertificates) == 0 {
		return nil, nil
	}
	_, pool := t.current()
	leaf := state.PeerCertificates[0]
	inter := x509.NewCertPool()
	for _, c := range state.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, err
	}
	return leaf, nil
}

// metricsAuth admits a verified client certificate or an authorised
// bearer token.
type metricsAuth struct {
	tls    *tlsFiles
	client kubernetes.Interface

	mu    sync.Mutex
	cache map[string]decision
}

type decision struct {
	code    int // http.StatusOK when allowed
	msg     string
	expires time.Time
}

func (a *metricsAuth) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := a.tls.verifyClient(r.TLS)
		if err != nil {
			deny(w, http.StatusUnauthorized, "client certificate refused: "+err.Error())
			return
		}
		if cert != nil {
			next.ServeHTTP(w, r)
			return
		}
		scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		token = strings.TrimSpace(token)
		if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" {
			deny(w, http.StatusUnauthorized, "a client certificate or a bearer token is required")
			return
		}
		if d := a.review(r.Context(), token, r.URL.Path); d.code != http.StatusOK {
			deny(w, d.code, d.msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func deny(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kubeup-addon-manager"`)
	}
	http.Error(w, msg, code)
}

// review asks the API server who the token is and whether they may GET
// path. Answers are cached; failures to ask are not.
func (a *metricsAuth) review(ctx context.Context, token, path string) decision {
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:]) + " " + path
	now := time.Now()
	a.mu.Lock()
	d, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(d.expires) {
		return d
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx,
		&authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}}, metav1.CreateOptions{})
	if err != nil {
		return decision{code: http.StatusServiceUnavailable, msg: "token review: " + err.Error()}
	}
	if !tr.Status.Authenticated {
		return a.remember(key, decision{code: http.StatusUnauthorized, msg: "invalid bearer token"}, now)
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := a.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: "get"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return decision{code: http.StatusServiceUnavailable, msg: "subject access review: " + err.Error()}
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		return a.remember(key, decision{code: http.StatusForbidden, msg: fmt.Sprintf("%q may not get %s", u.Username, path)}, now)
	}
	return a.remember(key, decision{code: http.StatusOK}, now)
}

func (a *metricsAuth) remember(key string, d decision, now time.Time) decision {
	d.expires = now.Add(decisionTTL)
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxDecisions {
		for k, old := range a.cache {
			if !now.Before(old.expires) {
				delete(a.cache, k)
			}
		}
		if len(a.cache) >= maxDecisions {
			clear(a.cache)
		}
	}
	a.cache[key] = d
	return d
}
