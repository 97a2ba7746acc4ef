package ui

import (
	"net/http"
	"net/url"
	"path"
	"strings"
)

// Links are the page's links. All are relative to the page, so they work
// wherever the page is served from: the API server's service proxy
// rewrites absolute paths in proxied HTML into the proxied service
// (/x becomes /api/v1/namespaces/kube-system/services/kubeup-ui:http/proxy/x),
// which would send an absolute link to another service's proxy into this one.
type Links struct {
	Self string // the page itself
	JSON string // /api/overview
	// Metrics and Logs are the metrics and log UIs; empty when not configured.
	Metrics string
	Logs    string
}

// ProxyPath is the path of a Service's port through the API server's
// service proxy, with a trailing slash.
func ProxyPath(namespace, service, port string) string {
	return "/api/v1/namespaces/" + namespace + "/services/" + service + ":" + port + "/proxy/"
}

// pageLinks are the links for the page at pagePath (as the browser sees it).
func pageLinks(page string, cfg Config) Links {
	l := Links{Self: relativeRef(page, dir(page)), JSON: relativeRef(page, dir(page)+"api/overview")}
	if cfg.MetricsUIPath != "" {
		l.Metrics = relativeRef(page, cfg.MetricsUIPath)
	}
	if cfg.LogsUIPath != "" {
		l.Logs = relativeRef(page, cfg.LogsUIPath)
	}
	return l
}

// metricsGraph links to the metrics UI's expression browser with expr.
func (l Links) metricsGraph(expr string) string {
	if l.Metrics == "" {
		return ""
	}
	return l.Metrics + "graph?" + url.Values{"g0.expr": {expr}, "g0.tab": {"1"}}.Encode()
}

// pagePath is the request's path as the browser sees it: behind a proxy
// that says where it mounts this server (X-Forwarded-Prefix), or that
// passes the original path (X-Forwarded-Uri, which the API server's
// service proxy sets), or the request's own path.
func pagePath(r *http.Request) string {
	if p := r.Header.Get("X-Forwarded-Prefix"); p != "" {
		if pp, ok := cleanPath(strings.TrimSuffix(p, "/") + r.URL.Path); ok {
			return pp
		}
	}
	if u := r.Header.Get("X-Forwarded-Uri"); u != "" {
		if parsed, err := url.Parse(u); err == nil {
			if pp, ok := cleanPath(parsed.Path); ok {
				return pp
			}
		}
	}
	return r.URL.Path
}

// cleanPath cleans an absolute path, keeping a trailing slash.
func cleanPath(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c, true
}

// dir is the directory part of an absolute path, with a trailing slash.
func dir(p string) string { return p[:strings.LastIndex(p, "/")+1] }

// relativeRef is a relative reference that resolves to target (an
// absolute path) from the page at page (an absolute path).
func relativeRef(page, target string) string {
	from := strings.Split(dir(page), "/")
	from = from[1 : len(from)-1] // directories, without the empty ends
	to := strings.Split(target, "/")[1:]
	n := 0
	for n < len(from) && n < len(to)-1 && from[n] == to[n] {
		n++
	}
	rel := strings.Repeat("../", len(from)-n) + strings.Join(to[n:], "/")
	if rel == "" {
		return "./"
	}
	// "prometheus:web/proxy/" would read as a URL with the scheme "prometheus".
	if first, _, _ := strings.Cut(rel, "/"); strings.Contains(first, ":") {
		rel = "./" + rel
	}
	return rel
}
