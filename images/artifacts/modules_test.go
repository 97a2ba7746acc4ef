package artifacts

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"

	"kubeup.dev/kubeup/images"
)

// TestWrapperModulesMatchVersions keeps images/modules/*/go.mod and
// images/versions.yaml in step, and every component buildable.
func TestWrapperModulesMatchVersions(t *testing.T) {
	t.Parallel()
	modules := filepath.Join("..", "modules")
	v := images.Pinned()
	for _, c := range v.Components {
		recipe, ok := buildRecipeFor(c, 0)
		if c.Package != "" {
			if ok {
				t.Errorf("%s: a Debian package with a build recipe", c.Name)
			}
			continue
		}
		if !ok {
			t.Errorf("%s: no build recipe in recipes.go", c.Name)
			continue
		}
		if len(recipe.Builds) == 0 {
			t.Errorf("%s: recipe builds nothing", c.Name)
		}
		dir := filepath.Join(modules, c.Name)
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err != nil {
			t.Errorf("%s: %v", c.Name, err)
			continue
		}
		if c.Module != "" {
			if err := checkModule(dir, c.Module, c.Version); err != nil {
				t.Error(err)
			}
		}
	}
	for _, im := range v.Images {
		if _, ok := imageRecipeFor(im.Name); !ok {
			t.Errorf("image %s: no image recipe", im.Name)
		}
	}
}

// TestKubernetesStagingReplaces checks that every k8s.io staging module is
// replaced by the release matching the pinned Kubernetes version (v1.37.2 ->
// v0.37.2), as a Kubernetes wrapper module must.
func TestKubernetesStagingReplaces(t *testing.T) {
	c, _ := images.Pinned().Component("kubernetes")
	want := "v0." + strings.SplitN(strings.TrimPrefix(c.Version, "v1."), "-", 2)[0]
	path := filepath.Join("..", "modules", "kubernetes", "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range f.Replace {
		if !strings.HasPrefix(r.Old.Path, "k8s.io/") {
			continue
		}
		n++
		if r.New.Path != r.Old.Path || r.New.Version != want {
			t.Errorf("replace %s => %s %s, want %s", r.Old.Path, r.New.Path, r.New.Version, want)
		}
	}
	if n < 30 {
		t.Errorf("only %d k8s.io replaces; Kubernetes %s has 33 staging modules", n, c.Version)
	}
}

// TestConformanceModuleMatchesKubernetes: the conformance wrapper builds
// against exactly the kubernetes wrapper's module graph: the same replace
// list and the same version of every module both require.
func TestConformanceModuleMatchesKubernetes(t *testing.T) {
	parse := func(name string) *modfile.File {
		t.Helper()
		path := filepath.Join("..", "modules", name, "go.mod")
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		f, err := modfile.Parse(path, data, nil)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	k, c := parse("kubernetes"), parse("conformance")
	replaces := func(f *modfile.File) map[string]string {
		m := map[string]string{}
		for _, r := range f.Replace {
			m[r.Old.String()] = r.New.String()
		}
		return m
	}
	kr, cr := replaces(k), replaces(c)
	for old, n := range kr {
		if cr[old] != n {
			t.Errorf("replace %s: kubernetes => %s, conformance => %q", old, n, cr[old])
		}
	}
	for old, n := range cr {
		if _, ok := kr[old]; !ok {
			t.Errorf("replace %s => %s only in conformance", old, n)
		}
	}
	kv := map[string]string{}
	for _, r := range k.Require {
		kv[r.Mod.Path] = r.Mod.Version
	}
	shared := 0
	for _, r := range c.Require {
		v, ok := kv[r.Mod.Path]
		if !ok {
			continue
		}
		shared++
		if v != r.Mod.Version {
			t.Errorf("require %s: kubernetes %s, conformance %s", r.Mod.Path, v, r.Mod.Version)
		}
	}
	if kv["k8s.io/kubernetes"] == "" || shared < 100 {
		t.Errorf("only %d shared requirements (k8s.io/kubernetes %q)", shared, kv["k8s.io/kubernetes"])
	}
}

func TestCheckModule(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module x\n\ngo 1.26\n\nrequire go.etcd.io/etcd/server/v3 v3.6.15\n"), 0o644)
	err := checkModule(dir, "go.etcd.io/etcd/server/v3", "v3.6.16")
	if err == nil || !strings.Contains(err.Error(), "requires go.etcd.io/etcd/server/v3 v3.6.15 but images/versions.yaml pins v3.6.16") {
		t.Errorf("err = %v", err)
	}
	if err := checkModule(dir, "k8s.io/kubernetes", "v1.37.2"); err == nil || !strings.Contains(err.Error(), "does not require") {
		t.Errorf("err = %v", err)
	}
}
