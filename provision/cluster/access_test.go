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
