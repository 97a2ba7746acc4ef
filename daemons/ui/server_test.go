package ui

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/test/golden"
)

// uiProxyPath is where the API server's service proxy serves the page.
var uiProxyPath = ProxyPath("kube-system", "kubeup-ui", "http")

var fixedNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func ago(d time.Duration) metav1.Time { return metav1.NewTime(fixedNow.Add(-d)) }

func node(name, role, ip, cidr string, ready corev1.ConditionStatus, age time.Duration) *corev1.Node {
	n := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: ago(age),
			Labels: map[string]string{"kubeup.dev/role": role}},
		Spec: corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
		Status: corev1.NodeStatus{
			Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: ready}},
			Addresses:  []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}},
			NodeInfo:   corev1.NodeSystemInfo{KubeletVersion: "v1.37.2"},
		},
	}
	if role == "master" {
		n.Labels["node-role.kubernetes.io/control-plane"] = ""
	}
	if ready != corev1.ConditionTrue {
		n.Status.Conditions[0].Message = "Kubelet stopped posting node status."
	}
	return n
}

func pod(ns, name, nodeName string, phase corev1.PodPhase, ready bool, restarts int32, waiting string, age time.Duration) *corev1.Pod {
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: ago(age)},
		Spec:       corev1.PodSpec{NodeName: nodeName, Containers: []corev1.Container{{Name: "main"}}},
		Status: corev1.PodStatus{Phase: phase, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: cond}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "main", Ready: ready, RestartCount: restarts}}},
	}
	if waiting != "" {
		p.Status.ContainerStatuses[0].State.Waiting = &corev1.ContainerStateWaiting{Reason: waiting}
	}
	return p
}

func event(ns, name, typ, reason, kind, obj, msg string, count int32, age time.Duration) *corev1.Event {
	return &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Namespace: ns, Name: name, CreationTimestamp: ago(age)},
		InvolvedObject: corev1.ObjectReference{Kind: kind, Name: obj, Namespace: ns},
		Type:           typ, Reason: reason, Message: msg, Count: count, LastTimestamp: ago(age),
	}
}

func clusterObjects() []runtime.Object {
	return []runtime.Object{
		node("m1", "master", "10.0.0.2", "10.244.0.0/24", corev1.ConditionTrue, 50*time.Hour),
		node("n1", "node", "10.0.0.3", "10.244.1.0/24", corev1.ConditionTrue, 49*time.Hour),
		node("n2", "node", "10.0.0.4", "10.244.2.0/24", corev1.ConditionUnknown, 3*time.Hour),
		pod("kube-system", "coredns-5d4f-abcde", "m1", corev1.PodRunning, true, 0, "", 50*time.Hour),
		pod("kube-system", "kubeup-ui-7c9b-xyz12", "m1", corev1.PodRunning, true, 1, "", 2*time.Hour),
		pod("default", "web-0", "n1", corev1.PodRunning, false, 7, "CrashLoopBackOff", 90*time.Minute),
		pod("default", "pending-0", "", corev1.PodPending, false, 0, "", 5*time.Minute),
		pod("default", "job-done", "n1", corev1.PodSucceeded, false, 0, "", 24*time.Hour),
		event("default", "web-0.1", corev1.EventTypeWarning, "BackOff", "Pod", "web-0", "Back-off restarting failed container main <b>", 42, 30*time.Second),
		event("default", "pending-0.1", corev1.EventTypeWarning, "FailedScheduling", "Pod", "pending-0", "0/3 nodes are available.", 3, 4*time.Minute),
		event("kube-system", "kubeup-ui.1", corev1.EventTypeNormal, "ScalingReplicaSet", "Deployment", "kubeup-ui", "Scaled up replica set kubeup-ui-7c9b to 1", 1, 2*time.Hour),
		event("default", "n2.1", corev1.EventTypeNormal, "NodeNotReady", "Node", "n2", "Node n2 status is now: NodeNotReady", 1, 10*time.Minute),
		lease("kube-system", "kube-controller-manager", "m1_5d0c6b4e-0a1f-4c43-9a8e-2f3b1c7d9e01", 15, 3*time.Second),
		lease("kube-system", "kube-scheduler", "m1_0b6f2d8a-7c3e-4e5f-8a9b-1c2d3e4f5a6b", 15, 4*time.Second),
	}
}

func lease(ns, name, holder string, seconds int32, renewed time.Duration) *coordinationv1.Lease {
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: coordinationv1.LeaseSpec{LeaseDurationSeconds: &seconds, RenewTime: &metav1.MicroTime{Time: fixedNow.Add(-renewed)}}}
	if holder != "" {
		l.Spec.HolderIdentity = &holder
	}
	return l
}

// sample is one series of a fake Prometheus answer.
type sample struct {
	labels map[string]string
	value  string
}

func promAnswers() map[string][]sample {
	unit := func(machine, unit, state string) sample {
		return sample{map[string]string{"__name__": "kubeup_unit_state", "machine": machine, "instance": machine + ":10290", "unit": unit, "state": state}, "1"}
	}
	restarts := func(machine, unit, n string) sample {
		return sample{map[string]string{"__name__": "kubeup_unit_restarts_total", "machine": machine, "instance": machine + ":10290", "unit": unit}, n}
	}
	return map[string][]sample{
		QueryUnitState: {
			unit("m1", "etcd", "active"), unit("m1", "kube-apiserver", "active"), unit("m1", "kubelet", "active"),
			unit("n1", "kubelet", "failed"), unit("n1", "containerd", "active"),
		},
		QueryUnitRestarts: {
			restarts("m1", "etcd", "0"), restarts("m1", "kube-apiserver", "2"), restarts("m1", "kubelet", "0"),
			restarts("n1", "kubelet", "5"), restarts("n1", "containerd", "0"),
		},
		QueryCertExpiry: {
			{map[string]string{"machine": "m1", "instance": "m1:10290"}, fmt.Sprint(300 * 24 * 3600)},
			{map[string]string{"machine": "n1", "instance": "n1:10290"}, fmt.Sprint(10 * 24 * 3600)},
		},
	}
}

// fakePrometheus answers /api/v1/query from answers, as Prometheus does.
func fakePrometheus(t *testing.T, answers map[string][]sample) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		q := r.Form.Get("query")
		samples, ok := answers[q]
		if !ok {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"status":"error","errorType":"bad_data","error":"unexpected query %q"}`, q)
			return
		}
		type series struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		result := []series{}
		for _, s := range samples {
			result = append(result, series{s.labels, [2]any{float64(fixedNow.Unix()), s.value}})
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": "success",
			"data": map[string]any{"resultType": "vector", "result": result}})
	}))
	t.Cleanup(srv.Close)
	return srv
}

func testConfig(promURL string) Config {
	return Config{Listen: ":8080", ClusterName: "demo", PrometheusURL: promURL,
		MetricsUIPath: DefaultMetricsUIPath, LogsUIPath: DefaultLogsUIPath, Refresh: 30 * time.Second}
}

// startServer runs a Server on a fake clientset and waits for its caches.
func startServer(t *testing.T, cfg Config, objs ...runtime.Object) (*Server, *fake.Clientset) {
	t.Helper()
	client := fake.NewClientset(objs...)
	s, err := NewServer(client, cfg, func() time.Time { return fixedNow })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		s.Shutdown()
	})
	s.Start(ctx)
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if !s.WaitForSync(wctx) {
		t.Fatal("caches did not sync")
	}
	return s, client
}

// get serves one request through the handler, as the API server's service
// proxy would send it.
func get(t *testing.T, h http.Handler, method, target string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	req.Header.Set("X-Forwarded-Uri", strings.TrimSuffix(uiProxyPath, "/")+req.URL.Path)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestPageAndJSONGolden(t *testing.T) {
	prom := fakePrometheus(t, promAnswers())
	s, _ := startServer(t, testConfig(prom.URL), clusterObjects()...)
	h := s.Handler()

	rec := get(t, h, http.MethodGet, "/")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "text/html; charset=utf-8" {
		t.Fatalf("GET /: %d %s\n%s", rec.Code, rec.Header().Get("Content-Type"), rec.Body)
	}
	// The fake Prometheus' port changes each run; nothing on a healthy page names it.
	if strings.Contains(rec.Body.String(), prom.URL) {
		t.Error("page shows the Prometheus URL")
	}
	golden.Assert(t, "page.html", rec.Body.Bytes())

	rec = get(t, h, http.MethodGet, "/api/overview")
	if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("GET /api/overview: %d %s", rec.Code, rec.Header().Get("Content-Type"))
	}
	golden.Assert(t, "overview.json", rec.Body.Bytes())
	var o Overview
	dec := json.NewDecoder(bytes.NewReader(rec.Body.Bytes()))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&o); err != nil {
		t.Fatal(err)
	}
	if !o.Synced || len(o.Nodes) != 3 || len(o.Pods) != 5 || len(o.Events) != 4 || len(o.Machines) != 3 || o.MetricsError != "" {
		t.Errorf("overview: synced %v, %d nodes, %d pods, %d events, %d machines, metrics error %q",
			o.Synced, len(o.Nodes), len(o.Pods), len(o.Events), len(o.Machines), o.MetricsError)
	}
}

func TestOverviewContent(t *testing.T) {
	prom := fakePrometheus(t, promAnswers())
	s, _ := startServer(t, testConfig(prom.URL), clusterObjects()...)
	o := s.Overview(context.Background())

	// Pods that need attention come first.
	var names []string
	for _, p := range o.Pods {
		names = append(names, p.Namespace+"/"+p.Name)
	}
	want := []string{"default/pending-0", "default/web-0", "default/job-done", "kube-system/coredns-5d4f-abcde", "kube-system/kubeup-ui-7c9b-xyz12"}
	if !slices.Equal(names, want) {
		t.Errorf("pod order %v, want %v", names, want)
	}
	if p := o.Pods[1]; p.Ready != "0/1" || p.Reason != "CrashLoopBackOff" || p.Restarts != 7 || p.OK {
		t.Errorf("web-0: %+v", p)
	}
	// Events newest first.
	if o.Events[0].Reason != "BackOff" || o.Events[len(o.Events)-1].Reason != "ScalingReplicaSet" {
		t.Errorf("event order %+v", o.Events)
	}
	// n2 has no metrics; n1's kubelet failed; m1 is fine.
	byName := map[string]Machine{}
	for _, m := range o.Machines {
		byName[m.Name] = m
	}
	if m := byName["m1"]; !m.Healthy() || len(m.Units) != 3 || m.Units[1] != (Unit{"kube-apiserver", "active", 2}) || m.CertificateExpirySoon() {
		t.Errorf("m1: %+v", m)
	}
	if m := byName["n1"]; m.Healthy() || m.Units[1] != (Unit{"kubelet", "failed", 5}) || !m.CertificateExpirySoon() {
		t.Errorf("n1: %+v", m)
	}
	if m := byName["n2"]; m.Reporting || m.Healthy() {
		t.Errorf("n2: %+v", m)
	}
	if n := o.Nodes[0]; n.Name != "m1" || !slices.Equal(n.Roles, []string{"control-plane"}) || n.InternalIP != "10.0.0.2" || n.Age != "2d2h" {
		t.Errorf("m1 node: %+v", n)
	}
	if n := o.Nodes[1]; !slices.Equal(n.Roles, []string{"node"}) {
		t.Errorf("n1 roles (kubeup's label before the addon manager translates it): %v", n.Roles)
	}
}

func TestEventsNewestFiftyFirst(t *testing.T) {
	var events []*corev1.Event
	for i := range 60 {
		events = append(events, event("default", fmt.Sprintf("e%02d", i), corev1.EventTypeNormal, "R", "Pod", "p", "m", 1, time.Duration(i)*time.Minute))
	}
	rows := EventRows(events, fixedNow)
	if len(rows) != MaxEvents {
		t.Fatalf("%d events, want %d", len(rows), MaxEvents)
	}
	for i, r := range rows {
		if want := fixedNow.Add(-time.Duration(i) * time.Minute); !r.Time.Equal(want) {
			t.Fatalf("event %d at %s, want %s", i, r.Time, want)
		}
	}
}

func TestPrometheusDown(t *testing.T) {
	prom := httptest.NewServer(http.NotFoundHandler())
	promURL := prom.URL
	prom.Close() // nothing listens there any more
	s, _ := startServer(t, testConfig(promURL), clusterObjects()...)

	rec := get(t, s.Handler(), http.MethodGet, "/")
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("GET / with Prometheus down: %d", rec.Code)
	}
	if !strings.Contains(body, "Prometheus at "+promURL+" is unreachable") {
		t.Errorf("page does not say Prometheus is unreachable:\n%s", body)
	}
	// The rest of the page is still there.
	for _, s := range []string{"web-0", "m1", "FailedScheduling"} {
		if !strings.Contains(body, s) {
			t.Errorf("page lacks %q with Prometheus down", s)
		}
	}
}

func TestPrometheusErrorAndOff(t *testing.T) {
	prom := fakePrometheus(t, map[string][]sample{}) // every query is bad_data
	s, _ := startServer(t, testConfig(prom.URL))
	if e := s.Overview(context.Background()).MetricsError; !strings.Contains(e, "answered with an error") {
		t.Errorf("metrics error %q", e)
	}
	off := testConfig("")
	off.MetricsUIPath = ""
	s, _ = startServer(t, off)
	body := get(t, s.Handler(), http.MethodGet, "/").Body.String()
	if !strings.Contains(body, "no Prometheus is configured") || strings.Contains(body, ">Metrics<") {
		t.Errorf("page without monitoring:\n%s", body)
	}
}

func TestReadOnly(t *testing.T) {
	prom := fakePrometheus(t, promAnswers())
	s, client := startServer(t, testConfig(prom.URL), clusterObjects()...)
	h := s.Handler()
	for _, m := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, "PROPFIND"} {
		for _, path := range []string{"/", "/api/overview", "/healthz", "/nope"} {
			rec := get(t, h, m, path)
			if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d, Allow %q", m, path, rec.Code, rec.Header().Get("Allow"))
			}
		}
	}
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		for _, path := range []string{"/", "/api/overview", "/healthz"} {
			if rec := get(t, h, m, path); rec.Code != http.StatusOK {
				t.Errorf("%s %s: %d", m, path, rec.Code)
			}
		}
	}
	if rec := get(t, h, http.MethodGet, "/nope"); rec.Code != http.StatusNotFound {
		t.Errorf("GET /nope: %d", rec.Code)
	}

	// Every API call the UI made is a read its ClusterRole allows.
	allowed := map[string]bool{}
	for _, r := range addons.UIRules() {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					allowed[g+"/"+res+"/"+v] = true
				}
			}
		}
	}
	// and, in kube-system alone, its Role.
	allowedInNamespace := map[string]bool{}
	for _, r := range addons.UILeaseRules() {
		for _, g := range r.APIGroups {
			for _, res := range r.Resources {
				for _, v := range r.Verbs {
					allowedInNamespace[g+"/"+res+"/"+v] = true
				}
			}
		}
	}
	actions := client.Actions()
	if len(actions) == 0 {
		t.Fatal("no API calls recorded")
	}
	for _, a := range actions {
		gvr := a.GetResource()
		key := gvr.Group + "/" + gvr.Resource + "/" + a.GetVerb()
		if !allowed[key] && !(allowedInNamespace[key] && a.GetNamespace() == addons.Namespace) {
			t.Errorf("API call %s %s/%s in %q is not granted by addons.UIRules or UILeaseRules", a.GetVerb(), gvr.Group, gvr.Resource, a.GetNamespace())
		}
		if _, ok := a.(k8stesting.GetAction); !ok && a.GetVerb() != "list" && a.GetVerb() != "watch" {
			t.Errorf("API call %s is not a read", a.GetVerb())
		}
	}
}

func TestHealthzBeforeSync(t *testing.T) {
	s, err := NewServer(fake.NewClientset(), testConfig(""), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec := get(t, s.Handler(), http.MethodGet, "/healthz"); rec.Code != http.StatusServiceUnavailable {
		t.Errorf("healthz before sync: %d", rec.Code)
	}
}

var hrefRE = regexp.MustCompile(`href="([^"]*)"`)

// The page is served through the API server's service proxy, here the
// real handler from k8s.io/apimachinery's proxy package (which rewrites
// absolute links in HTML): every link must resolve to its target.
func TestLinksThroughAPIServerProxy(t *testing.T) {
	prom := fakePrometheus(t, promAnswers())
	s, _ := startServer(t, testConfig(prom.URL), clusterObjects()...)
	var forwardedURI string
	ui := s.Handler()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		forwardedURI = r.Header.Get("X-Forwarded-Uri")
		ui.ServeHTTP(w, r)
	}))
	defer backend.Close()
	apiserver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, strings.TrimSuffix(uiProxyPath, "/"))
		if !ok {
			http.NotFound(w, r)
			return
		}
		loc, _ := url.Parse(backend.URL + rest)
		proxy.NewUpgradeAwareHandler(loc, nil, true, false, errorResponder{t}).ServeHTTP(w, r)
	}))
	defer apiserver.Close()

	pageURL := apiserver.URL + uiProxyPath
	resp, err := http.Get(pageURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d\n%s", pageURL, resp.StatusCode, body)
	}
	if forwardedURI != uiProxyPath {
		t.Errorf("X-Forwarded-Uri %q, want %q", forwardedURI, uiProxyPath)
	}

	base, _ := url.Parse(pageURL)
	var got []string
	for _, m := range hrefRE.FindAllStringSubmatch(string(body), -1) {
		href := html.UnescapeString(m[1])
		if strings.HasPrefix(href, "/") {
			t.Errorf("absolute link %q: the service proxy rewrites it", href)
		}
		u, err := base.Parse(href)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, u.RequestURI())
	}
	graph := func(machine string) string {
		return DefaultMetricsUIPath + "graph?" + url.Values{"g0.expr": {`kubeup_unit_state{machine="` + machine + `"} == 1`}, "g0.tab": {"1"}}.Encode()
	}
	want := []string{uiProxyPath, DefaultMetricsUIPath, DefaultLogsUIPath, uiProxyPath + "api/overview", graph("m1"), graph("n1"), graph("n2")}
	if !slices.Equal(got, want) {
		t.Errorf("links resolve to\n%q\nwant\n%q", got, want)
	}

	// The JSON link works through the proxy too.
	resp, err = http.Get(apiserver.URL + uiProxyPath + "api/overview")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("JSON through the proxy: %d", resp.StatusCode)
	}
}

type errorResponder struct{ t *testing.T }

func (e errorResponder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	e.t.Errorf("proxy: %v", err)
	http.Error(w, err.Error(), http.StatusBadGateway)
}

func TestRelativeRef(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ page, target, want string }{
		{uiProxyPath, DefaultMetricsUIPath, "../../prometheus:web/proxy/"},
		{uiProxyPath, DefaultLogsUIPath, "../../victoria-logs:http/proxy/select/vmui/"},
		{uiProxyPath, uiProxyPath, "./"},
		{uiProxyPath, uiProxyPath + "api/overview", "api/overview"},
		{"/", "/api/v1/namespaces/kube-system/services/prometheus:web/proxy/", "api/v1/namespaces/kube-system/services/prometheus:web/proxy/"},
		{"/", "/", "./"},
		{"/ui/", "/prometheus:web/", "../prometheus:web/"},
		{"/a/", "/a/b:c/", "./b:c/"},
		{"/a/page", "/a/other", "other"},
	} {
		got := relativeRef(c.page, c.target)
		if got != c.want {
			t.Errorf("relativeRef(%q, %q) = %q, want %q", c.page, c.target, got, c.want)
		}
		// And it resolves back to the target.
		base := &url.URL{Scheme: "https", Host: "h", Path: c.page}
		ref, err := url.Parse(got)
		if err != nil || ref.Scheme != "" || base.ResolveReference(ref).Path != c.target {
			t.Errorf("relativeRef(%q, %q) = %q does not resolve to the target (%v)", c.page, c.target, got, err)
		}
	}
}

func TestPagePath(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		path, prefix, uri, want string
	}{
		{"/", "", "", "/"},
		{"/", "", uiProxyPath, uiProxyPath},
		{"/", "/ui/", uiProxyPath, "/ui/"},
		{"/api/overview", "/ui", "", "/ui/api/overview"},
		{"/", "", "relative/nonsense", "/"},
		{"/", "", "/a/../b/", "/b/"},
	} {
		req := httptest.NewRequest(http.MethodGet, c.path, nil)
		if c.prefix != "" {
			req.Header.Set("X-Forwarded-Prefix", c.prefix)
		}
		if c.uri != "" {
			req.Header.Set("X-Forwarded-Uri", c.uri)
		}
		if got := pagePath(req); got != c.want {
			t.Errorf("pagePath(%q, prefix %q, uri %q) = %q, want %q", c.path, c.prefix, c.uri, got, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	if err := testConfig("http://prometheus:9090").Validate(); err != nil {
		t.Error(err)
	}
	bad := Config{PrometheusURL: "prometheus:9090", MetricsUIPath: "relative/", LogsUIPath: "/x?y", Refresh: -1}
	err := bad.Validate()
	if err == nil {
		t.Fatal("bad config validates")
	}
	for _, s := range []string{"listen", "prometheus", "metrics-ui-path", "logs-ui-path", "refresh"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}
