package agent

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
)

// AdminGroup is the certificate Organization of kubeup's admin credentials;
// only it may read /v1/status and /v1/journal.
const AdminGroup = "system:masters"

// Bearer decisions are cached for decisionTTL (both ways, as the API
// server's webhook authorizer does), in at most maxDecisions entries.
const (
	decisionTTL   = time.Minute
	maxDecisions  = 512
	reviewTimeout = 10 * time.Second
)

// authenticator guards the agent's endpoints:
//   - metrics: a client certificate from the cluster CA, or a bearer token
//     the API server authenticates (TokenReview) and authorises for a GET of
//     the request path (SubjectAccessReview), the way the Kubernetes
//     components' delegated authn/authz does;
//   - admin: a client certificate in AdminGroup.
type authenticator struct {
	tls  *tlsFiles
	kube *kubeClient
	now  func() time.Time

	mu    sync.Mutex
	cache map[string]decision
}

type decision struct {
	code    int // http.StatusOK when allowed
	msg     string
	expires time.Time
}

func newAuthenticator(t *tlsFiles, k *kubeClient, now func() time.Time) *authenticator {
	return &authenticator{tls: t, kube: k, now: now, cache: map[string]decision{}}
}

func deny(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="kubeup-agent"`)
	}
	http.Error(w, msg, code)
}

// clientCert returns the request's verified client certificate (nil when
// none was presented) or why the presented one is refused.
func (a *authenticator) clientCert(r *http.Request) (*x509.Certificate, error) {
	cert, err := a.tls.verifyClient(r.TLS)
	if err != nil {
		return nil, fmt.Errorf("client certificate refused: %w", err)
	}
	return cert, nil
}

// metrics admits a verified client certificate or an authorised bearer token.
func (a *authenticator) metrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := a.clientCert(r)
		if err != nil {
			deny(w, http.StatusUnauthorized, err.Error())
			return
		}
		if cert != nil {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := bearerToken(r)
		if !ok {
			deny(w, http.StatusUnauthorized, "a client certificate or a bearer token is required")
			return
		}
		d := a.reviewToken(r.Context(), token, r.URL.Path)
		if d.code != http.StatusOK {
			deny(w, d.code, d.msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// admin admits only client certificates in AdminGroup.
func (a *authenticator) admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := a.clientCert(r)
		switch {
		case err != nil:
			deny(w, http.StatusUnauthorized, err.Error())
		case cert == nil:
			deny(w, http.StatusUnauthorized, "a client certificate in group "+AdminGroup+" is required")
		case !slices.Contains(cert.Subject.Organization, AdminGroup):
			deny(w, http.StatusForbidden, fmt.Sprintf("%q is not in group %s", cert.Subject.CommonName, AdminGroup))
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}

// reviewToken asks the API server who the token is and whether they may GET
// path; answers are cached, failures to ask are not.
func (a *authenticator) reviewToken(ctx context.Context, token, path string) decision {
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:]) + " " + path
	now := a.now()
	a.mu.Lock()
	d, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(d.expires) {
		return d
	}

	client, ok := a.kube.Get()
	if !ok {
		return decision{code: http.StatusServiceUnavailable, msg: "cannot check bearer tokens yet: waiting for the kubeconfig"}
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	tr, err := client.CreateTokenReview(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}})
	if err != nil {
		return decision{code: http.StatusServiceUnavailable, msg: "token review: " + err.Error()}
	}
	if !tr.Status.Authenticated {
		d = decision{code: http.StatusUnauthorized, msg: "invalid bearer token"}
		if tr.Status.Error != "" {
			d.msg += ": " + tr.Status.Error
		}
		return a.remember(key, d, now)
	}
	u := tr.Status.User
	extra := map[string]authzv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authzv1.ExtraValue(v)
	}
	sar, err := client.CreateSubjectAccessReview(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: "get"},
		},
	})
	if err != nil {
		return decision{code: http.StatusServiceUnavailable, msg: "subject access review: " + err.Error()}
	}
	if !sar.Status.Allowed || sar.Status.Denied {
		msg := fmt.Sprintf("%q may not get %s", u.Username, path)
		if sar.Status.Reason != "" {
			msg += ": " + sar.Status.Reason
		}
		return a.remember(key, decision{code: http.StatusForbidden, msg: msg}, now)
	}
	return a.remember(key, decision{code: http.StatusOK}, now)
}

func (a *authenticator) remember(key string, d decision, now time.Time) decision {
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
			clear(a.cache) // a flood of distinct tokens: start over rather than grow
		}
	}
	a.cache[key] = d
	return d
}
