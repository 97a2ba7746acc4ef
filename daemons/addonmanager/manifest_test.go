package addonmanager

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubeup.dev/kubeup/components"
)

// writeFiles creates files (relative path → content) under a new directory.
func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func names(addons []Addon) []string {
	out := make([]string, len(addons))
	for i, a := range addons {
		out[i] = a.String()
	}
	return out
}

func TestLoadManifestsMultiDocument(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"10-dns.yaml": `# leading comment
---
apiVersion: v1
kind: ServiceAccount
metadata:
  name: coredns
  namespace: kube-system
  labels: {addonmanager.kubernetes.io/mode: Reconcile}
---
# an empty document
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: coredns
  namespace: kube-system
  resourceVersion: "42"
  uid: 0b5e4a1c-0000-0000-0000-000000000000
  labels: {addonmanager.kubernetes.io/mode: EnsureExists}
data: {Corefile: ".:53 {}"}
`,
		"20-list.yml": `apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Namespace
  metadata: {name: monitoring, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
- apiVersion: rbac.authorization.k8s.io/v1
  kind: ClusterRole
  metadata: {name: reader, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
`,
		"sub/30-priority.json": `{"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
 "metadata": {"name": "addons", "labels": {"addonmanager.kubernetes.io/mode": "Reconcile"}}, "value": 1000}`,
		"README.md":         "not a manifest",
		".hidden.yaml":      "{not: [yaml",
		".git/config.yaml":  "{not: [yaml",
		"backup.yaml~":      "{not: [yaml",
		"sub/empty.yaml":    "",
		"sub/comments.yaml": "# nothing here\n",
		"sub/only-sep.yaml": "---\n---\n",
	})
	addons, err := LoadManifests([]string{dir})
	if err != nil {
		t.Fatalf("LoadManifests: %v", err)
	}
	want := []string{
		"ServiceAccount kube-system/coredns",
		"ConfigMap kube-system/coredns",
		"Namespace monitoring",
		"ClusterRole.rbac.authorization.k8s.io reader",
		"PriorityClass.scheduling.k8s.io addons",
	}
	if got := names(addons); !slices.Equal(got, want) {
		t.Fatalf("addons = %q, want %q", got, want)
	}
	cm := addons[1]
	if cm.Mode != EnsureExists || addons[0].Mode != Reconcile {
		t.Errorf("modes = %s, %s", addons[0].Mode, cm.Mode)
	}
	if rv, uid := cm.Object.GetResourceVersion(), cm.Object.GetUID(); rv != "" || uid != "" {
		t.Errorf("server-set metadata kept: resourceVersion %q uid %q", rv, uid)
	}
	if got := cm.Object.GetLabels()[ManagedByLabel]; got != FieldManager {
		t.Errorf("%s = %q, want %q", ManagedByLabel, got, FieldManager)
	}
	if want := filepath.Join(dir, "10-dns.yaml") + "#4"; cm.Source != want {
		t.Errorf("source = %q, want %q", cm.Source, want)
	}
	if v, ok := addons[4].Object.Object["value"].(int64); !ok || v != 1000 {
		t.Errorf("JSON number decoded as %#v, want int64 1000", addons[4].Object.Object["value"])
	}
}

func TestLoadManifestsLabelRules(t *testing.T) {
	t.Parallel()
	dir := writeFiles(t, map[string]string{
		"addons.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: good, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: unlabelled, namespace: kube-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: legacy, namespace: kube-system, labels: {kubernetes.io/cluster-service: "true"}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: wrong-mode, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Ignore}}
---
apiVersion: v1
kind: ConfigMap
metadata: {generateName: gen-, namespace: kube-system, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
`,
	})
	addons, err := LoadManifests([]string{dir})
	if got := names(addons); !slices.Equal(got, []string{"ConfigMap kube-system/good"}) {
		t.Errorf("accepted %q, want only the good one", got)
	}
	errs := unjoin(err)
	if len(errs) != 4 {
		t.Fatalf("got %d errors, want 4: %v", len(errs), err)
	}
	file := filepath.Join(dir, "addons.yaml")
	for i, c := range []struct {
		object string
		is     error
		text   string
	}{
		{"ConfigMap kube-system/unlabelled", ErrNoMode, "#2"},
		{"ConfigMap kube-system/legacy", ErrNoMode, "#3"},
		{"ConfigMap kube-system/wrong-mode", ErrBadMode, `"Ignore"`},
		{"ConfigMap kube-system/", nil, "generateName"},
	} {
		var me *ManifestError
		if !errors.As(errs[i], &me) {
			t.Fatalf("error %d is %T, want *ManifestError", i, errs[i])
		}
		if me.Object != c.object || !strings.HasPrefix(me.Source, file) {
			t.Errorf("error %d names %q in %q, want %q in %s", i, me.Object, me.Source, c.object, file)
		}
		if c.is != nil && !errors.Is(errs[i], c.is) {
			t.Errorf("error %d = %v, want %v", i, errs[i], c.is)
		}
		if msg := errs[i].Error(); !strings.Contains(msg, c.text) || !strings.Contains(msg, file) {
			t.Errorf("error %d = %q, want it to name %s and contain %q", i, msg, file, c.text)
		}
	}
}

func TestLoadManifestsBadFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a-good.yaml":   "apiVersion: v1\nkind: Namespace\nmetadata: {name: a, labels: {addonmanager.kubernetes.io/mode: Reconcile}}\n",
		"b-bad.yaml":    "apiVersion: v1\nkind: Namespace\nmetadata: {name: [unclosed\n",
		"c-nokind.yaml": "apiVersion: v1\nmetadata: {name: c, labels: {addonmanager.kubernetes.io/mode: Reconcile}}\n",
		"d-good.yaml":   "apiVersion: v1\nkind: Namespace\nmetadata: {name: d, labels: {addonmanager.kubernetes.io/mode: Reconcile}}\n",
		"e-dup.yaml":    "apiVersion: v1\nkind: Namespace\nmetadata: {name: d, labels: {addonmanager.kubernetes.io/mode: EnsureExists}}\n",
	})
	missing := filepath.Join(dir, "nope")
	addons, err := LoadManifests([]string{dir, missing})
	if got := names(addons); !slices.Equal(got, []string{"Namespace a", "Namespace d"}) {
		t.Errorf("accepted %q, want the two good files' objects", got)
	}
	errs := unjoin(err)
	if len(errs) != 4 {
		t.Fatalf("got %d errors, want 4: %v", len(errs), err)
	}
	for i, want := range []string{
		filepath.Join(dir, "b-bad.yaml"),
		filepath.Join(dir, "c-nokind.yaml"),
		filepath.Join(dir, "e-dup.yaml"),
		missing,
	} {
		if !strings.Contains(errs[i].Error(), want) {
			t.Errorf("error %d = %q, want it to name %s", i, errs[i], want)
		}
	}
	if !errors.Is(errs[2], ErrDuplicate) || !strings.Contains(errs[2].Error(), "d-good.yaml") {
		t.Errorf("duplicate error = %v, want ErrDuplicate naming the first file", errs[2])
	}
	if !errors.Is(errs[3], ErrMissingDir) {
		t.Errorf("missing dir error = %v, want ErrMissingDir", errs[3])
	}
}

func TestOrder(t *testing.T) {
	mk := func(apiVersion, kind, name string) Addon {
		dir := writeFiles(t, map[string]string{"x.yaml": "apiVersion: " + apiVersion + "\nkind: " + kind +
			"\nmetadata: {name: " + name + ", labels: {" + components.AddonModeLabel + ": Reconcile}}\n"})
		a, err := LoadManifests([]string{dir})
		if err != nil {
			t.Fatal(err)
		}
		return a[0]
	}
	addons := []Addon{
		mk("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration", "hook"),
		mk("apps/v1", "Deployment", "dns"),
		mk("example.com/v1", "Widget", "w"),
		mk("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", "crb"),
		mk("apps/v1", "DaemonSet", "ds"),
		mk("rbac.authorization.k8s.io/v1", "ClusterRole", "cr"),
		mk("v1", "ServiceAccount", "sa"),
		mk("apiextensions.k8s.io/v1", "CustomResourceDefinition", "widgets.example.com"),
		mk("v1", "Namespace", "ns"),
		mk("v1", "Service", "svc"),
	}
	Order(addons)
	want := []string{
		"Namespace ns",
		"CustomResourceDefinition.apiextensions.k8s.io widgets.example.com",
		"ServiceAccount sa",
		"ClusterRole.rbac.authorization.k8s.io cr",
		"ClusterRoleBinding.rbac.authorization.k8s.io crb",
		"Service svc",
		"Deployment.apps dns", // unlisted kinds keep manifest order
		"Widget.example.com w",
		"DaemonSet.apps ds",
		"ValidatingWebhookConfiguration.admissionregistration.k8s.io hook",
	}
	if got := names(addons); !slices.Equal(got, want) {
		t.Errorf("order:\n got %q\nwant %q", got, want)
	}
}
