package httpauth

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
)

// AdminGroup is the certificate Organization of kubeup's admin
// credentials; Admin admits only it.
const AdminGroup = "system:masters"

// DecisionTTL is how long an allowed bearer-token decision is cached and
// DeniedTTL a refusal, as the kubelet's webhook authorizer does by default
// (5 min / 30 s), in at most maxDecisions entries. Prometheus scrapes every
// minute: a shorter TTL cost two reviews per target per scrape, and a
// saturated API server's slow answers turned into failed scrapes.
//
// While the API server cannot be asked (down, restarting, overloaded), an
// allowed decision younger than StaleTTL still stands: metrics matter
// most while the API server is away, and a token stays valid for far
// longer than that.
const (
	DecisionTTL   = 5 * time.Minute
	DeniedTTL     = 30 * time.Second
	StaleTTL      = 30 * time.Minute
	maxDecisions  = 512
	reviewTimeout = 10 * time.Second
)

// Reviewer is the part of the Kubernetes API bearer tokens need: who the
// token is (TokenReview), and whether they may do something
// (SubjectAccessReview).
type Reviewer interface {
	CreateTokenReview(ctx context.Context, tr *authnv1.TokenReview) (*authnv1.TokenReview, error)
	CreateSubjectAccessReview(ctx context.Context, sar *authzv1.SubjectAccessReview) (*authzv1.SubjectAccessReview, error)
}

// ErrNotReady is what a Reviewer returns, wrapped with what it waits for,
// while it cannot ask the API server yet: the request gets a 503 with that
// message, and nothing is cached.
var ErrNotReady = errors.New("cannot check bearer tokens yet")

// Authenticator guards HTTPS endpoints:
//   - Metrics: a client certificate from the client CA, or a bearer token
//     the API server authenticates (TokenReview) and authorises for a GET of
//     the request path (SubjectAccessReview);
//   - Admin: a client certificate in AdminGroup.
//
// A refusal is a 401 (with WWW-Authenticate) when the caller is not known,
// a 403 when it is known but not allowed, and a 503 when the API server
// cannot be asked.
type Authenticator struct {
	files    *TLSFiles
	reviewer Reviewer
	realm    string
	now      func() time.Time

	mu    sync.Mutex
	cache map[string]decision
}

type decision struct {
	code    int // http.StatusOK when allowed
	msg     string
	decided time.Time
	expires time.Time
}

// NewAuthenticator checks client certificates against files and bearer
// tokens with r; realm names the server in WWW-Authenticate; now is the
// clock (nil: time.Now).
func NewAuthenticator(files *TLSFiles, r Reviewer, realm string, now func() time.Time) *Authenticator {
	if now == nil {
		now = time.Now
	}
	return &Authenticator{files: files, reviewer: r, realm: realm, now: now, cache: map[string]decision{}}
}

func (a *Authenticator) deny(w http.ResponseWriter, code int, msg string) {
	if code == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="`+a.realm+`"`)
	}
	http.Error(w, msg, code)
}

// clientCert returns the request's verified client certificate (nil when
// none was presented) or why the presented one is refused.
func (a *Authenticator) clientCert(r *http.Request) (*x509.Certificate, error) {
	cert, err := a.files.VerifyClient(r.TLS)
	if err != nil {
		return nil, fmt.Errorf("client certificate refused: %w", err)
	}
	return cert, nil
}

// Metrics admits a verified client certificate or an authorised bearer
// token.
func (a *Authenticator) Metrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := a.clientCert(r)
		if err != nil {
			a.deny(w, http.StatusUnauthorized, err.Error())
			return
		}
		if cert != nil {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := bearerToken(r)
		if !ok {
			a.deny(w, http.StatusUnauthorized, "a client certificate or a bearer token is required")
			return
		}
		d := a.reviewToken(r.Context(), token, r.URL.Path)
		if d.code != http.StatusOK {
			a.deny(w, d.code, d.msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// Admin admits only client certificates in AdminGroup.
func (a *Authenticator) Admin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cert, err := a.clientCert(r)
		switch {
		case err != nil:
			a.deny(w, http.StatusUnauthorized, err.Error())
		case cert == nil:
			a.deny(w, http.StatusUnauthorized, "a client certificate in group "+AdminGroup+" is required")
		case !slices.Contains(cert.Subject.Organization, AdminGroup):
			a.deny(w, http.StatusForbidden, fmt.Sprintf("%q is not in group %s", cert.Subject.CommonName, AdminGroup))
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
func (a *Authenticator) reviewToken(ctx context.Context, token, path string) decision {
	sum := sha256.Sum256([]byte(token))
	key := hex.EncodeToString(sum[:]) + " " + path
	now := a.now()
	a.mu.Lock()
	d, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(d.expires) {
		return d
	}

	// An earlier "allowed" stands in while the API server cannot answer.
	stale := func(fail decision) decision {
		if ok && d.code == http.StatusOK && now.Before(d.decided.Add(StaleTTL)) {
			return d
		}
		return fail
	}
	ctx, cancel := context.WithTimeout(ctx, reviewTimeout)
	defer cancel()
	tr, err := a.reviewer.CreateTokenReview(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: token}})
	if err != nil {
		return stale(unavailable("token review", err))
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
	sar, err := a.reviewer.CreateSubjectAccessReview(ctx, &authzv1.SubjectAccessReview{
		Spec: authzv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authzv1.NonResourceAttributes{Path: path, Verb: "get"},
		},
	})
	if err != nil {
		return stale(unavailable("subject access review", err))
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

// unavailable is the 503 for a review that could not be made.
func unavailable(review string, err error) decision {
	if errors.Is(err, ErrNotReady) {
		return decision{code: http.StatusServiceUnavailable, msg: err.Error()}
	}
	return decision{code: http.StatusServiceUnavailable, msg: review + ": " + err.Error()}
}

func (a *Authenticator) remember(key string, d decision, now time.Time) decision {
	d.decided, d.expires = now, now.Add(DecisionTTL)
	if d.code != http.StatusOK {
		d.expires = now.Add(DeniedTTL)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.cache) >= maxDecisions {
		for k, old := range a.cache {
			if !now.Before(old.expires) && !now.Before(old.decided.Add(StaleTTL)) {
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
