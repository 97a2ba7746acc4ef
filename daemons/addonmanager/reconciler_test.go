package addonmanager

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	k8stesting "k8s.io/client-go/testing"

	"kubeup.dev/kubeup/components"
)

var (
	namespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	configmaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	crds        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	widgets     = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	testKinds   = map[schema.GroupVersionResource]struct {
		kind       string
		namespaced bool
	}{
		namespaces:  {"Namespace", false},
		configmaps:  {"ConfigMap", true},
		deployments: {"Deployment", true},
		crds:        {"CustomResourceDefinition", false},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}: {"ClusterRole", false},
		{Version: "v1", Resource: "serviceaccounts"}:                                  {"ServiceAccount", true},
		widgets: {"Widget", true},
	}
)

// testMapper is a static mapper whose Reset can "discover" more kinds.
type testMapper struct {
	*meta.DefaultRESTMapper
	resets  int
	onReset func(*meta.DefaultRESTMapper)
}

func (m *testMapper) Reset() {
	m.resets++
	if m.onReset != nil {
		m.onReset(m.DefaultRESTMapper)
		m.onReset = nil
	}
}

func addKind(m *meta.DefaultRESTMapper, gvr schema.GroupVersionResource) {
	k := testKinds[gvr]
	scope := meta.RESTScopeRoot
	if k.namespaced {
		scope = meta.RESTScopeNamespace
	}
	m.Add(gvr.GroupVersion().WithKind(k.kind), scope)
}

// fakeCluster is a fake dynamic client that answers server-side apply the
// way the API server does where the tests look: an apply creates a missing
// object, merges labels and annotations, replaces the fields it declares,
// and bumps resourceVersion only when something changed.
type fakeCluster struct {
	*dynamicfake.FakeDynamicClient
	rv atomic.Int64
}

func newFakeCluster(t *testing.T, objs ...*unstructured.Unstructured) (*fakeCluster, *testMapper) {
	t.Helper()
	var versions []schema.GroupVersion
	for gvr := range testKinds {
		versions = append(versions, gvr.GroupVersion())
	}
	mapper := &testMapper{DefaultRESTMapper: meta.NewDefaultRESTMapper(versions)}
	listKinds := map[schema.GroupVersionResource]string{}
	for gvr, k := range testKinds {
		listKinds[gvr] = k.kind + "List"
		if gvr != widgets {
			addKind(mapper.DefaultRESTMapper, gvr)
		}
	}
	c := &fakeCluster{FakeDynamicClient: dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), listKinds)}
	c.rv.Store(100)
	for _, o := range objs {
		c.put(t, o)
	}
	c.PrependReactor("patch", "*", c.apply)
	return c, mapper
}

func (c *fakeCluster) nextRV() string { return fmt.Sprint(c.rv.Add(1)) }

func gvrOf(o *unstructured.Unstructured) schema.GroupVersionResource {
	for gvr, k := range testKinds {
		if gvr.GroupVersion() == o.GroupVersionKind().GroupVersion() && k.kind == o.GetKind() {
			return gvr
		}
	}
	panic("no test resource for " + o.GetKind())
}

// put stores an object as a user would have created or updated it.
func (c *fakeCluster) put(t *testing.T, o *unstructured.Unstructured) {
	t.Helper()
	o = o.DeepCopy()
	o.SetResourceVersion(c.nextRV())
	if o.GetUID() == "" {
		o.SetUID(types.UID("uid-" + o.GetName()))
	}
	gvr := gvrOf(o)
	err := c.Tracker().Create(gvr, o, o.GetNamespace())
	if apierrors.IsAlreadyExists(err) {
		err = c.Tracker().Update(gvr, o, o.GetNamespace())
	}
	if err != nil {
		t.Fatal(err)
	}
}

func (c *fakeCluster) get(t *testing.T, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	o, err := c.Tracker().Get(gvr, ns, name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return o.(*unstructured.Unstructured)
}

func (c *fakeCluster) apply(action k8stesting.Action) (bool, runtime.Object, error) {
	pa := action.(k8stesting.PatchAction)
	if pa.GetPatchType() != types.ApplyPatchType {
		return false, nil, nil
	}
	patch := &unstructured.Unstructured{}
	if err := patch.UnmarshalJSON(pa.GetPatch()); err != nil {
		return true, nil, err
	}
	gvr, ns := pa.GetResource(), pa.GetNamespace()
	existing, err := c.Tracker().Get(gvr, ns, pa.GetName())
	if apierrors.IsNotFound(err) {
		patch.SetResourceVersion(c.nextRV())
		patch.SetUID(types.UID("uid-" + patch.GetName()))
		return true, patch, c.Tracker().Create(gvr, patch, ns)
	}
	if err != nil {
		return true, nil, err
	}
	live := existing.(*unstructured.Unstructured)
	merged := live.DeepCopy()
	for k, v := range patch.Object {
		if k != "metadata" {
			merged.Object[k] = v
		}
	}
	labels, annotations := merged.GetLabels(), merged.GetAnnotations()
	if labels == nil {
		labels = map[string]string{}
	}
	if annotations == nil {
		annotations = map[string]string{}
	}
	for k, v := range patch.GetLabels() {
		labels[k] = v
	}
	for k, v := range patch.GetAnnotations() {
		annotations[k] = v
	}
	merged.SetLabels(labels)
	if len(annotations) > 0 {
		merged.SetAnnotations(annotations)
	}
	if fmt.Sprint(merged.Object) == fmt.Sprint(live.Object) {
		return true, live, nil
	}
	merged.SetResourceVersion(c.nextRV())
	return true, merged, c.Tracker().Update(gvr, merged, ns)
}

// writes lists the verbs and objects the manager sent, in order.
func (c *fakeCluster) writes() []string {
	var out []string
	for _, a := range c.Actions() {
		switch a := a.(type) {
		case k8stesting.PatchAction:
			out = append(out, "apply "+a.GetResource().Resource+" "+a.GetName())
		case k8stesting.CreateAction:
			out = append(out, "create "+a.GetResource().Resource+" "+a.GetObject().(*unstructured.Unstructured).GetName())
		case k8stesting.DeleteAction:
			out = append(out, "delete "+a.GetResource().Resource+" "+a.GetName())
		}
	}
	return out
}

func obj(apiVersion, kind, ns, name string, labels map[string]string, fields map[string]any) *unstructured.Unstructured {
	o := &unstructured.Unstructured{Object: map[string]any{}}
	for k, v := range fields {
		o.Object[k] = v
	}
	o.SetAPIVersion(apiVersion)
	o.SetKind(kind)
	o.SetNamespace(ns)
	o.SetName(name)
	o.SetLabels(labels)
	return o
}

// ours are the labels of an object this manager applied in mode m.
func ours(m Mode) map[string]string {
	return map[string]string{components.AddonModeLabel: string(m), ManagedByLabel: FieldManager}
}

func newTestReconciler(t *testing.T, c *fakeCluster, mapper *testMapper, dirs ...string) *Reconciler {
	t.Helper()
	r := NewReconciler(ReconcilerOptions{
		Dirs: dirs, Resync: time.Minute, Client: c, Mapper: mapper,
		Log:     slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: NewMetrics(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() {
		cancel()
		r.queue.ShutDown()
		r.factory.Shutdown()
	})
	r.stop = ctx.Done()
	return r
}

// next processes one queued object, failing the test if none comes.
func next(t *testing.T, r *Reconciler) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		r.processNext(context.Background())
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("nothing was queued")
	}
}

// eventually waits for cond, which informer event delivery makes
// asynchronous.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// waitCached waits until the informers have seen every declared object.
func waitCached(t *testing.T, r *Reconciler) {
	t.Helper()
	r.mu.Lock()
	targets := slices.Collect(maps.Values(r.desired))
	r.mu.Unlock()
	for _, tg := range targets {
		eventually(t, "the informer to see "+tg.String(), func() bool { live, _ := r.cached(tg); return live != nil })
	}
}

const addonsYAML = `apiVersion: apps/v1
kind: Deployment
metadata: {name: dns, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
spec: {replicas: 2}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: dns, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
rules: [{apiGroups: [""], resources: [endpoints], verbs: [list]}]
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: dns, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: dns, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: EnsureExists}}
data: {Corefile: "default"}
---
apiVersion: v1
kind: Namespace
metadata: {name: kube-system, labels: {addonmanager.kubernetes.io/mode: EnsureExists}}
`

func TestSyncAppliesInOrder(t *testing.T) {
	c, mapper := newFakeCluster(t)
	r := newTestReconciler(t, c, mapper, writeFiles(t, map[string]string{"dns.yaml": addonsYAML}))
	res := r.Sync(context.Background())
	if res.Declared != 5 || res.Changed != 5 || res.Failed != 0 || !res.Pruning {
		t.Errorf("result = %+v, want 5 declared and changed, pruning", res)
	}
	want := []string{
		"create namespaces kube-system",
		"apply serviceaccounts dns",
		"create configmaps dns",
		"apply clusterroles dns",
		"apply deployments dns",
	}
	if got := c.writes(); !slices.Equal(got, want) {
		t.Errorf("writes:\n got %q\nwant %q", got, want)
	}
	d := c.get(t, deployments, "kube-system", "dns")
	if d == nil || d.GetLabels()[ManagedByLabel] != FieldManager {
		t.Fatalf("deployment = %v, want it applied with %s", d, ManagedByLabel)
	}
	for _, a := range c.Actions() {
		if pa, ok := a.(k8stesting.PatchAction); ok {
			opts := pa.(k8stesting.PatchActionImpl).PatchOptions
			if opts.FieldManager != FieldManager || opts.Force == nil || !*opts.Force {
				t.Errorf("apply %s with options %+v, want field manager %s and force", pa.GetName(), opts, FieldManager)
			}
		}
	}
	if got := testutil.ToFloat64(r.metrics.lastSuccess); got == 0 {
		t.Error("last successful sync timestamp not set")
	}
	if r.LastRun().IsZero() {
		t.Error("LastRun not set")
	}

	// A second sync finds every object as it applied it (the cache holds
	// the objects of its own applies) and writes nothing.
	waitCached(t, r)
	c.ClearActions()
	if res := r.Sync(context.Background()); res.Changed != 0 || res.Failed != 0 {
		t.Errorf("second sync = %+v, want nothing changed", res)
	}
	if got := c.writes(); len(got) != 0 {
		t.Errorf("second sync writes %q, want none", got)
	}
	if got := testutil.ToFloat64(r.metrics.skipped.WithLabelValues("Deployment")); got != 1 {
		t.Errorf("unchanged Deployments counted %v, want 1", got)
	}

	// Once fullApplyEvery resyncs have passed since an object's last apply
	// (here: at once), a sync re-applies Reconcile objects and still
	// leaves EnsureExists ones.
	r.resync = 0
	c.ClearActions()
	if res := r.Sync(context.Background()); res.Changed != 0 || res.Failed != 0 {
		t.Errorf("third sync = %+v, want nothing changed", res)
	}
	want = []string{"apply serviceaccounts dns", "apply clusterroles dns", "apply deployments dns"}
	if got := c.writes(); !slices.Equal(got, want) {
		t.Errorf("third sync writes:\n got %q\nwant %q", got, want)
	}
}

func TestEnsureExistsIsNeverUpdated(t *testing.T) {
	edited := obj("v1", "ConfigMap", "kube-system", "dns", ours(EnsureExists), map[string]any{"data": map[string]any{"Corefile": "edited by a user"}})
	foreign := obj("v1", "Namespace", "", "kube-system", nil, nil) // created by the API server, without our labels
	c, mapper := newFakeCluster(t, edited, foreign)
	r := newTestReconciler(t, c, mapper, writeFiles(t, map[string]string{"dns.yaml": addonsYAML}))
	if res := r.Sync(context.Background()); res.Failed != 0 {
		t.Fatalf("sync = %+v", res)
	}
	for _, w := range c.writes() {
		if strings.Contains(w, "configmaps") || w == "apply namespaces kube-system" {
			t.Errorf("EnsureExists object written: %s", w)
		}
	}
	if got, _, _ := unstructured.NestedString(c.get(t, configmaps, "kube-system", "dns").Object, "data", "Corefile"); got != "edited by a user" {
		t.Errorf("ConfigMap data = %q, want the user's edit kept", got)
	}
	if ns := c.get(t, namespaces, "", "kube-system"); ns.GetLabels()[ManagedByLabel] != "" {
		t.Errorf("existing namespace got our labels: %v", ns.GetLabels())
	}

	// Deleted, it is created again from the manifest.
	if err := c.Tracker().Delete(configmaps, "kube-system", "dns"); err != nil {
		t.Fatal(err)
	}
	next(t, r) // queued by the informer's delete event
	if got, _, _ := unstructured.NestedString(c.get(t, configmaps, "kube-system", "dns").Object, "data", "Corefile"); got != "default" {
		t.Errorf("re-created ConfigMap data = %q, want the manifest's", got)
	}
}

func TestReconcileRestoresEditsAndDeletions(t *testing.T) {
	c, mapper := newFakeCluster(t)
	r := newTestReconciler(t, c, mapper, writeFiles(t, map[string]string{"dns.yaml": addonsYAML}))
	if res := r.Sync(context.Background()); res.Failed != 0 {
		t.Fatalf("sync = %+v", res)
	}
	restored := func(name string) float64 {
		return testutil.ToFloat64(r.metrics.restored.WithLabelValues("Deployment", name))
	}

	// Someone scales the deployment: the update event restores it.
	d := c.get(t, deployments, "kube-system", "dns")
	eventually(t, "the informer to see the deployment", func() bool { live, _ := r.cached(r.desired[keyOf(d)]); return live != nil })
	d.Object["spec"] = map[string]any{"replicas": int64(5)}
	c.put(t, d)
	next(t, r)
	if got, _, _ := unstructured.NestedInt64(c.get(t, deployments, "kube-system", "dns").Object, "spec", "replicas"); got != 2 {
		t.Errorf("replicas = %d after restore, want 2", got)
	}
	if got := restored("kube-system/dns"); got != 1 {
		t.Errorf("restored_total = %v, want 1", got)
	}

	// Someone deletes it: the delete event re-creates it.
	if err := c.Tracker().Delete(deployments, "kube-system", "dns"); err != nil {
		t.Fatal(err)
	}
	next(t, r)
	if c.get(t, deployments, "kube-system", "dns") == nil {
		t.Fatal("deployment not re-created")
	}
	if got := restored("kube-system/dns"); got != 2 {
		t.Errorf("restored_total = %v, want 2", got)
	}

	// An edit that leaves the declared fields alone (status, a label of
	// someone else's) is not a divergence.
	d = c.get(t, deployments, "kube-system", "dns")
	eventually(t, "the informer to see the re-created deployment", func() bool { live, _ := r.cached(r.desired[keyOf(d)]); return live != nil })
	d.Object["status"] = map[string]any{"readyReplicas": int64(2)}
	l := d.GetLabels()
	l["team"] = "dns"
	d.SetLabels(l)
	c.put(t, d)
	eventually(t, "the informer to see the status update", func() bool {
		live, _ := r.cached(r.desired[keyOf(d)])
		return live != nil && live.GetResourceVersion() == d.GetResourceVersion()
	})
	if n := r.queue.Len(); n != 0 {
		t.Errorf("queue has %d items after a status update, want 0", n)
	}
}

func TestPruneOnlyOurObjects(t *testing.T) {
	cm := func(name string, labels map[string]string) *unstructured.Unstructured {
		return obj("v1", "ConfigMap", "kube-system", name, labels, nil)
	}
	c, mapper := newFakeCluster(t,
		cm("stale", ours(Reconcile)),
		cm("someone-elses", map[string]string{components.AddonModeLabel: string(Reconcile)}),
		cm("stale-ensure", ours(EnsureExists)),
		cm("unlabelled", nil),
	)
	dir := writeFiles(t, map[string]string{"dns.yaml": addonsYAML})
	r := newTestReconciler(t, c, mapper, dir)
	res := r.Sync(context.Background())
	if res.Pruned != 1 {
		t.Errorf("pruned %d, want 1", res.Pruned)
	}
	for name, want := range map[string]bool{"stale": false, "someone-elses": true, "stale-ensure": true, "unlabelled": true, "dns": true} {
		if got := c.get(t, configmaps, "kube-system", name) != nil; got != want {
			t.Errorf("ConfigMap %s exists = %v, want %v", name, got, want)
		}
	}
	if got := testutil.ToFloat64(r.metrics.pruned.WithLabelValues("ConfigMap")); got != 1 {
		t.Errorf("pruned_total = %v, want 1", got)
	}

	// A manifest removed from disk: its Reconcile objects go, EnsureExists stay.
	waitCached(t, r)
	if err := writeFile(dir+"/dns.yaml", strings.SplitN(addonsYAML, "---\n", 2)[1]); err != nil {
		t.Fatal(err)
	}
	if res := r.Sync(context.Background()); res.Pruned != 1 || c.get(t, deployments, "kube-system", "dns") != nil {
		t.Errorf("after removing the deployment's manifest: %+v, deployment still there: %v", res, c.get(t, deployments, "kube-system", "dns") != nil)
	}

	// A refused document makes the declared set incomplete: nothing is pruned.
	if err := writeFile(dir+"/dns.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: kube-system}\n"); err != nil {
		t.Fatal(err)
	}
	res = r.Sync(context.Background())
	if res.Pruning || res.Pruned != 0 || res.Refused != 1 {
		t.Errorf("sync with a refused object = %+v, want no pruning", res)
	}
	if c.get(t, deployments, "kube-system", "dns") != nil || c.get(t, namespaces, "", "kube-system") == nil {
		t.Error("objects changed while pruning was off")
	}
	if got := c.get(t, serviceAccountsGVR(), "kube-system", "dns"); got == nil {
		t.Error("ServiceAccount pruned while the declared set is incomplete")
	}
}

func serviceAccountsGVR() schema.GroupVersionResource {
	return schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
}

func writeFile(path, content string) error {
	return os.WriteFile(path, []byte(content), 0o644)
}

func TestRetryAndUnknownKinds(t *testing.T) {
	c, mapper := newFakeCluster(t)
	// The CRD's kind is served only once discovery is refreshed.
	mapper.onReset = func(m *meta.DefaultRESTMapper) { addKind(m, widgets) }
	// The first apply of the deployment fails, as when its namespace is
	// not there yet.
	var failures atomic.Int32
	c.PrependReactor("patch", "deployments", func(k8stesting.Action) (bool, runtime.Object, error) {
		if failures.Add(1) == 1 {
			return true, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "kube-system")
		}
		return false, nil, nil
	})
	dir := writeFiles(t, map[string]string{
		"crd.yaml": `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: dns, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
`,
	})
	r := newTestReconciler(t, c, mapper, dir)
	res := r.Sync(context.Background())
	if res.Failed != 1 || mapper.resets != 1 {
		t.Errorf("sync = %+v with %d discovery resets, want 1 failure and 1 reset", res, mapper.resets)
	}
	if c.get(t, widgets, "kube-system", "w") == nil {
		t.Error("custom resource not applied after discovery refresh")
	}
	next(t, r) // the failed deployment, retried with backoff
	if c.get(t, deployments, "kube-system", "dns") == nil {
		t.Error("deployment not applied on retry")
	}
	if got := testutil.ToFloat64(r.metrics.failed.WithLabelValues("Deployment")); got != 1 {
		t.Errorf("failed_total = %v, want 1", got)
	}
}

func TestUnresolvedKindBlocksPruning(t *testing.T) {
	c, mapper := newFakeCluster(t, obj("v1", "ConfigMap", "kube-system", "stale", ours(Reconcile), nil))
	dir := writeFiles(t, map[string]string{"w.yaml": `apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
`})
	r := newTestReconciler(t, c, mapper, dir)
	res := r.Sync(context.Background())
	if res.Pruning || res.Failed != 1 || c.get(t, configmaps, "kube-system", "stale") == nil {
		t.Errorf("sync = %+v, want the unknown kind to fail and block pruning", res)
	}
}

func TestDiverged(t *testing.T) {
	t.Parallel()
	desired := obj("v1", "Secret", "kube-system", "s", map[string]string{"a": "1"}, map[string]any{
		"stringData": map[string]any{"token": "abc"},
		"spec": map[string]any{"replicas": int64(2), "containers": []any{
			map[string]any{"name": "c", "image": "x"},
		}},
	})
	live := func(mut func(*unstructured.Unstructured)) *unstructured.Unstructured {
		l := obj("v1", "Secret", "kube-system", "s", map[string]string{"a": "1", "other": "x"}, map[string]any{
			"data": map[string]any{"token": "YWJj"},
			"spec": map[string]any{"replicas": float64(2), "containers": []any{
				map[string]any{"name": "c", "image": "x", "imagePullPolicy": "IfNotPresent"},
			}},
			"status": map[string]any{"ready": true},
		})
		if mut != nil {
			mut(l)
		}
		return l
	}
	for _, c := range []struct {
		name string
		mut  func(*unstructured.Unstructured)
		want bool
	}{
		{"defaults, status and other labels", nil, false},
		{"label changed", func(l *unstructured.Unstructured) { l.SetLabels(map[string]string{"a": "2"}) }, true},
		{"scalar changed", func(l *unstructured.Unstructured) {
			unstructured.SetNestedField(l.Object, int64(3), "spec", "replicas")
		}, true},
		{"element added", func(l *unstructured.Unstructured) {
			unstructured.SetNestedSlice(l.Object, []any{map[string]any{"name": "c", "image": "x"}, map[string]any{"name": "d"}}, "spec", "containers")
		}, true},
		{"nested field changed", func(l *unstructured.Unstructured) {
			unstructured.SetNestedSlice(l.Object, []any{map[string]any{"name": "c", "image": "y"}}, "spec", "containers")
		}, true},
		{"secret data changed", func(l *unstructured.Unstructured) { unstructured.SetNestedField(l.Object, "eHl6", "data", "token") }, true},
		{"field removed", func(l *unstructured.Unstructured) { delete(l.Object, "spec") }, true},
	} {
		if got := diverged(desired, live(c.mut)); got != c.want {
			t.Errorf("%s: diverged = %v, want %v", c.name, got, c.want)
		}
	}
}
