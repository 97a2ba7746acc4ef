package addonmanager

import (
	"encoding/base64"
	"log/slog"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// withoutExpiredTokens drops bootstrap token Secrets whose expiration has
// passed from the declared set: the API server refuses such a token
// anyway, and the token cleaner deletes it; declaring it still would make
// the manager re-create it after every deletion. No longer declared, a
// token the manager created is pruned.
func withoutExpiredTokens(addons []Addon, now time.Time, log *slog.Logger) []Addon {
	out := addons[:0:0]
	for _, a := range addons {
		if exp, ok := tokenExpiration(a.Object); ok && !now.Before(exp) {
			log.Info("bootstrap token expired: no longer kept", "object", a.String(), "expired", exp)
			continue
		}
		out = append(out, a)
	}
	return out
}

// tokenExpiration is a bootstrap token Secret's expiration, if it has one.
func tokenExpiration(o *unstructured.Unstructured) (time.Time, bool) {
	if o.GetAPIVersion() != "v1" || o.GetKind() != "Secret" {
		return time.Time{}, false
	}
	if typ, _, _ := unstructured.NestedString(o.Object, "type"); typ != "bootstrap.kubernetes.io/token" {
		return time.Time{}, false
	}
	v, ok, _ := unstructured.NestedString(o.Object, "stringData", "expiration")
	if !ok {
		enc, found, _ := unstructured.NestedString(o.Object, "data", "expiration")
		if !found {
			return time.Time{}, false
		}
		b, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return time.Time{}, false
		}
		v = string(b)
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}
