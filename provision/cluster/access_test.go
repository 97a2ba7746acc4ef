package cluster

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestLogsQL(t *testing.T) {
	q := LogQuery{Unit: "kube-apiserver", Machine: "master-0", Since: 10 * time.Minute, Text: "priority:<=3"}
	if got, want := q.LogsQL(), `_time:10m0s unit:"kube-apiserver.service" machine:"master-0" priority:<=3`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	if got := (LogQuery{}).LogsQL(); got != "*" {
		t.Errorf("empty query %q", got)
	}
	q = LogQuery{Source: "audit", Since: 24 * time.Hour, Text: `verb:delete resource:deployments name:"web"`}
	if got, want := q.LogsQL(), `_time:24h0m0s source:"audit" verb:delete resource:deployments name:"web"`; got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestLogEntryLine(t *testing.T) {
	t.Parallel()
	ts := "2026-01-02T03:04:05.123Z"
	for _, tc := range []struct {
		e    LogEntry
		want string
	}{
		{LogEntry{"_time": ts, "machine": "master-0", "unit": "kubelet.service", "_msg": "started", "source": "journal"},
			"2026-01-02 03:04:05.123 master-0 kubelet.service: started"},
		{LogEntry{"_time": ts, "machine": "node-0", "namespace": "default", "pod": "web-1", "container": "nginx", "_msg": "GET /", "source": "pod"},
			"2026-01-02 03:04:05.123 node-0 default/web-1/nginx: GET /"},
		{LogEntry{"_time": ts, "machine": "master-0", "source": "audit", "_msg": "{...}", "user": "kubernetes-admin", "verb": "delete",
			"resource": "deployments", "namespace": "default", "name": "web", "code": "200"},
			"2026-01-02 03:04:05.123 master-0 audit: kubernetes-admin delete deployments default/web -> 200"},
		{LogEntry{"_time": ts, "machine": "master-0", "source": "audit", "user": "dev", "verb": "list", "resource": "nodes", "code": "403"},
			"2026-01-02 03:04:05.123 master-0 audit: dev list nodes -> 403"},
	} {
		if got := tc.e.Line(time.UTC); got != tc.want {
			t.Errorf("got  %s\nwant %s", got, tc.want)
		}
	}
}

func TestProxyAllowsOnlyAddonReads(t *testing.T) {
	cases := []struct {
		method, path string
		ok           bool
	}{
		{"GET", UIPath, true},
		{"GET", PrometheusPath + "graph", true},
		{"POST", PrometheusPath + "api/v1/query", true},
		{"GET", LogsUIPath, true},
		{"POST", "/api/v1/namespaces/kube-system/services/victoria-logs:http/proxy/select/logsql/query", true},
		{"DELETE", UIPath, false},
		{"POST", UIPath, false},
		{"GET", "/api/v1/secrets", false},
		{"GET", "/api/v1/namespaces/kube-system/services/kubernetes:https/proxy/", false},
		{"GET", "/api/v1/namespaces/default/services/prometheus:web/proxy/", false},
	}
	for _, c := range cases {
		r := httptest.NewRequest(c.method, c.path, nil)
		got := proxyAllowed.MatchString(r.URL.Path) && proxyMethodAllowed(r)
		if got != c.ok {
			t.Errorf("%s %s allowed=%v, want %v", c.method, c.path, got, c.ok)
		}
	}
}

func TestParseJSONLines(t *testing.T) {
	es, err := parseJSONLines(strings.NewReader(`{"_msg":"a","unit":"kubelet.service"}` + "\n\n" + `{"_msg":"b"}` + "\n"))
	if err != nil || len(es) != 2 || es[0]["unit"] != "kubelet.service" || es[1]["_msg"] != "b" {
		t.Errorf("%v %v", es, err)
	}
}
