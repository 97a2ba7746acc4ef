package addonmanager

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"kubeup.dev/kubeup/daemons/httpauth"
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

// newAuthenticator guards /metrics as the agent does (package httpauth): a
// client certificate from the cluster CA, or a bearer token the API server
// authenticates and authorises for a GET of the path, cached a minute.
func newAuthenticator(files *httpauth.TLSFiles, client kubernetes.Interface) *httpauth.Authenticator {
	return httpauth.NewAuthenticator(files, clientsetReviewer{client}, "kubeup-addon-manager", time.Now)
}

// clientsetReviewer is httpauth.Reviewer on client-go's clientset.
type clientsetReviewer struct{ client kubernetes.Interface }

func (r clientsetReviewer) CreateTokenReview(ctx context.Context, tr *authnv1.TokenReview) (*authnv1.TokenReview, error) {
	return r.client.AuthenticationV1().TokenReviews().Create(ctx, tr, metav1.CreateOptions{})
}

func (r clientsetReviewer) CreateSubjectAccessReview(ctx context.Context, sar *authzv1.SubjectAccessReview) (*authzv1.SubjectAccessReview, error) {
	return r.client.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
}
