package artifacts

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubeup.dev/kubeup/images"
)

func TestKeyChangesWithEveryInput(t *testing.T) {
	base := func() buildInput {
		return buildInput{
			Version: "v3.6.16", Module: "go.etcd.io/etcd/server/v3", ModuleDir: "images/modules/etcd",
			Go:  goEnv{Version: "go1.26.8"},
			Env: []string{"CGO_ENABLED=0", "GOOS=linux"},
			Recipe: buildRecipe{
				Builds: []goBuild{{Package: ".", Output: "usr/local/bin/etcd", Tags: []string{"a"}, LDFlags: []string{"-s", "-w"}}},
				Links:  []link{{Path: "usr/local/bin/etcdctl", Target: "etcd"}},
			},
			ModuleFiles: map[string]string{"go.mod": "1", "go.sum": "2", "main.go": "3"},
		}
	}
	key := func(in buildInput) string {
		k, err := computeKey("etcd", in)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	k0 := key(base())
	if k0 != key(base()) {
		t.Fatal("equal inputs gave different keys")
	}
	// Map order must not matter.
	in := base()
	in.ModuleFiles = map[string]string{"main.go": "3", "go.sum": "2", "go.mod": "1"}
	if key(in) != k0 {
		t.Error("module file order changed the key")
	}
	for name, change := range map[string]func(*buildInput){
		"version":     func(in *buildInput) { in.Version = "v3.6.17" },
		"go version":  func(in *buildInput) { in.Go.Version = "go1.26.9" },
		"experiment":  func(in *buildInput) { in.Go.Experiment = "jsonv2" },
		"cc":          func(in *buildInput) { in.Go.CC = "gcc 13" },
		"env":         func(in *buildInput) { in.Env = append(in.Env, "GOAMD64=v3") },
		"tags":        func(in *buildInput) { in.Recipe.Builds[0].Tags = []string{"b"} },
		"ldflags":     func(in *buildInput) { in.Recipe.Builds[0].LDFlags = []string{"-s"} },
		"cgo":         func(in *buildInput) { in.Recipe.Builds[0].CGO = true },
		"output":      func(in *buildInput) { in.Recipe.Builds[0].Output = "usr/bin/etcd" },
		"links":       func(in *buildInput) { in.Recipe.Links = nil },
		"go.sum":      func(in *buildInput) { in.ModuleFiles["go.sum"] = "changed" },
		"new go file": func(in *buildInput) { in.ModuleFiles["extra.go"] = "4" },
		"module":      func(in *buildInput) { in.Module = "go.etcd.io/etcd/v3" },
	} {
		in := base()
		change(&in)
		if key(in) == k0 {
			t.Errorf("changing %s did not change the key", name)
		}
	}
	// The name is part of the key too.
	if k, _ := computeKey("other", base()); k == k0 {
		t.Error("name not in key")
	}
}

func TestKeyFromModuleFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module x\n")
	write("main.go", "package main\n")
	files := func() map[string]string {
		f, err := moduleFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	f0 := files()
	if len(f0) != 2 {
		t.Fatalf("files %v", f0)
	}
	write("README.md", "docs do not matter")
	write("main_test.go", "package main")
	write("testdata/x.go", "package x")
	if k0, k1 := mustKey(t, f0), mustKey(t, files()); k0 != k1 {
		t.Error("docs, tests or testdata changed the key")
	}
	write("shim/main.go", "package main // shim")
	if mustKey(t, f0) == mustKey(t, files()) {
		t.Error("a Go file in a subpackage did not change the key")
	}
}

func mustKey(t *testing.T, in any) string {
	t.Helper()
	k, err := computeKey("x", in)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// fakePlans returns plans whose builds write one file and count their runs.
type fakeWorld struct {
	builds map[string]int
	fail   map[string]bool
}

func (w *fakeWorld) plan(t *testing.T, kind Kind, name, input string, deps ...string) *plan {
	t.Helper()
	key := mustKey(t, input)
	return &plan{
		kind: kind, name: name, version: "v1", use: images.UseRootfs, source: SourceBuild,
		keyInput: input, key: key, main: "usr/bin/" + name, deps: deps,
		build: func(ctx context.Context, root string, got map[string]*Artifact, p progress) (*ImageInfo, error) {
			w.builds[name]++
			for _, d := range deps {
				if got[d] == nil {
					t.Errorf("%s: dependency %s missing", name, d)
				}
			}
			if w.fail[name] {
				// Leave a half-written file behind: it must not reach the cache.
				os.WriteFile(filepath.Join(root, "partial"), []byte("x"), 0o644)
				return nil, errors.New("boom")
			}
			out := filepath.Join(root, "usr", "bin", name)
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return nil, err
			}
			if err := os.WriteFile(out, []byte(name+input), 0o755); err != nil {
				return nil, err
			}
			return nil, os.Symlink(name, filepath.Join(root, "usr", "bin", name+"-link"))
		},
	}
}

func TestEnsureCache(t *testing.T) {
	ctx := context.Background()
	w := &fakeWorld{builds: map[string]int{}, fail: map[string]bool{}}
	o := &Options{CacheDir: t.TempDir()}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	var progress strings.Builder
	o.Progress = &progress
	plans := func(aIn, bIn string) []*plan {
		a := w.plan(t, KindComponent, "a", aIn)
		b := w.plan(t, KindComponent, "b", bIn)
		// The image's key includes its component's key, as imagePlan does.
		img := w.plan(t, KindImage, "a", "image of "+a.key, "a")
		return []*plan{a, b, img}
	}

	set, err := ensurePlans(ctx, o, plans("1", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if w.builds["a"] != 2 || w.builds["b"] != 1 { // "a" counts the component and the image
		t.Fatalf("first run builds = %v", w.builds)
	}
	for _, a := range set.Artifacts {
		if a.Cached {
			t.Errorf("%s %s cached on first run", a.Kind, a.Name)
		}
		if got := a.MainFile(); got.Size == 0 || len(got.SHA256) != 64 {
			t.Errorf("%s main file %+v", a.Name, got)
		}
	}
	if set.Component("a") == nil || set.Image("a") == nil || set.Component("a") == set.Image("a") {
		t.Fatal("component and image of the same name not told apart")
	}
	if _, err := os.Stat(filepath.Join(set.Component("b").Dir, "manifest.json")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(progress.String(), "done in") {
		t.Errorf("no progress lines: %q", progress.String())
	}

	// Nothing changed: nothing is built.
	set, err = ensurePlans(ctx, o, plans("1", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if w.builds["a"] != 2 || w.builds["b"] != 1 {
		t.Fatalf("second run rebuilt: %v", w.builds)
	}
	for _, a := range set.Artifacts {
		if !a.Cached {
			t.Errorf("%s not cached on second run", a.Name)
		}
	}

	// b changed: only b is rebuilt.
	if _, err := ensurePlans(ctx, o, plans("1", "2")); err != nil {
		t.Fatal(err)
	}
	if w.builds["a"] != 2 || w.builds["b"] != 2 {
		t.Fatalf("changing b rebuilt %v", w.builds)
	}

	// a changed: a and the image made from it are rebuilt, b is not.
	if _, err := ensurePlans(ctx, o, plans("2", "2")); err != nil {
		t.Fatal(err)
	}
	if w.builds["a"] != 4 || w.builds["b"] != 2 {
		t.Fatalf("changing a rebuilt %v", w.builds)
	}

	// A damaged entry (file truncated) is rebuilt.
	set, err = ensurePlans(ctx, o, plans("2", "2"))
	if err != nil {
		t.Fatal(err)
	}
	b := set.Component("b")
	if err := os.WriteFile(b.Path(b.Main), nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := ensurePlans(ctx, o, plans("2", "2")); err != nil {
		t.Fatal(err)
	}
	if w.builds["b"] != 3 {
		t.Fatalf("damaged b not rebuilt: %v", w.builds)
	}

	// CacheOnly reports what is missing instead of building.
	o.CacheOnly = true
	_, err = ensurePlans(ctx, o, plans("3", "2"))
	if !errors.Is(err, ErrNotCached) || !strings.Contains(err.Error(), "a") {
		t.Fatalf("CacheOnly: err = %v", err)
	}
	if w.builds["a"] != 4 {
		t.Fatalf("CacheOnly built: %v", w.builds)
	}
	o.CacheOnly = false

	// A failed build leaves nothing in the cache, not even a temp dir.
	w.fail["b"] = true
	if _, err := ensurePlans(ctx, o, plans("2", "fails")); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Fatalf("failed build: err = %v", err)
	}
	entries, err := os.ReadDir(filepath.Join(o.CacheDir, "artifacts", "b"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".tmp") {
			t.Errorf("temp dir %s left behind", e.Name())
		}
		if e.Name() == mustKey(t, "fails") {
			t.Errorf("failed build reached the cache")
		}
	}
}

func TestSelected(t *testing.T) {
	v := images.Pinned()
	comps, imgs, err := selected(v, []string{"testbox", "etcd"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(comps, ",") != "etcd,busybox" || strings.Join(imgs, ",") != "testbox" {
		t.Errorf("selected = %v %v", comps, imgs)
	}
	if _, _, err := selected(v, []string{"etcd", "nope"}); err == nil || !strings.Contains(err.Error(), `unknown artifact nope`) {
		t.Errorf("unknown name: err = %v", err)
	}
	comps, imgs, _ = selected(v, nil)
	onDemand, onDemandImages := 0, 0
	for _, c := range v.Components {
		if c.OnDemand {
			onDemand++
		}
	}
	for _, i := range v.Images {
		if i.OnDemand() {
			onDemandImages++
		}
	}
	if len(comps) != len(v.Components)-onDemand || len(imgs) != len(v.Images)-onDemandImages {
		t.Errorf("all: %v %v", comps, imgs)
	}
	// The image pause and the component pause are told apart: an image made
	// from the component does not select the image of that name.
	if comps, imgs, _ = selected(v, []string{"e2e-pause"}); !slices.Equal(comps, []string{"pause"}) || !slices.Equal(imgs, []string{"e2e-pause"}) {
		t.Errorf("e2e-pause: %v %v", comps, imgs)
	}
}

func TestFindSrcDir(t *testing.T) {
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b")
	if err := os.MkdirAll(filepath.Join(root, "images", "modules"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	got, err := FindSrcDir(deep)
	if err != nil || got != root {
		t.Fatalf("FindSrcDir = %q, %v; want %q", got, err, root)
	}
	if _, err := FindSrcDir(t.TempDir()); err == nil {
		t.Error("found a source dir where there is none")
	}
}

// TestBuildPlanKey computes real keys (it runs `go env`) for a wrapper module
// in a temp checkout.
func TestBuildPlanKey(t *testing.T) {
	src := t.TempDir()
	mod := filepath.Join(src, "images", "modules", "pause")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module example.com/pause\n\ngo 1.26\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "main.go"), []byte("package main\n\nfunc main() {}\n"), 0o644)
	comp := images.Component{Name: "pause", Version: "3.10", Use: images.UseImage}
	key := func(c images.Component) string {
		t.Helper()
		o := &Options{SrcDir: src, CacheDir: t.TempDir()}
		if err := o.defaults(); err != nil {
			t.Fatal(err)
		}
		recipe, _ := buildRecipeFor(c, 0)
		pl, err := buildPlan(context.Background(), o, &goEnvs{goCmd: "go", byDir: map[string]goEnv{}}, c, recipe)
		if err != nil {
			t.Fatal(err)
		}
		return pl.key
	}
	k0 := key(comp)

	// The caller's unrelated environment (GOCACHE, a proxy, ...) is not an input.
	t.Setenv("GOCACHE", t.TempDir())
	t.Setenv("KUBEUP_UNRELATED", "x")
	if k := key(comp); k != k0 {
		t.Error("unrelated environment changed the key")
	}
	// GOTOOLCHAIN is.
	t.Setenv("GOTOOLCHAIN", "go1.26.8+auto")
	if k := key(comp); k == k0 {
		t.Error("GOTOOLCHAIN did not change the key")
	}
	t.Setenv("GOTOOLCHAIN", "")

	// The version is stamped (-X main.version): a new version, a new key.
	c2 := comp
	c2.Version = "3.11"
	if key(c2) == k0 {
		t.Error("version did not change the key")
	}
	// Editing the wrapper's code changes the key.
	os.WriteFile(filepath.Join(mod, "main.go"), []byte("package main\n\nfunc main() { println() }\n"), 0o644)
	if key(comp) == k0 {
		t.Error("editing main.go did not change the key")
	}
}

// TestImageKeysOfOneComponentImages: the fields added for images made of
// several components are left out of the key input of the images made of one
// (their cache keys, and so their cache entries, stay what they were).
func TestImageKeysOfOneComponentImages(t *testing.T) {
	for _, im := range images.Pinned().Images {
		if im.OnDemand() {
			continue
		}
		r, _ := imageRecipeFor(im.Name)
		b, err := json.Marshal(imageInput{Ref: im.Ref(), From: im.From, FromKey: "k", Recipe: r})
		if err != nil {
			t.Fatal(err)
		}
		for _, field := range []string{`"withKeys"`, `"sources"`, `"copy"`, `"moduleFiles"`, `"fill"`} {
			if strings.Contains(string(b), field) {
				t.Errorf("image %s: key input has %s: %s", im.Name, field, b)
			}
		}
	}
}

// TestImagePlanSeveralComponents computes the key of an image made of three
// components and files of a module (a temp wrapper module standing in for
// the conformance suite's): each of them is an input.
func TestImagePlanSeveralComponents(t *testing.T) {
	src := t.TempDir()
	mod := filepath.Join(src, "images", "modules", "conformance")
	write := func(rel, content string) {
		t.Helper()
		p := filepath.Join(mod, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("go.mod", "module example.com/suite\n\ngo 1.26\n")
	for _, f := range []string{"test/images/agnhost/porter/localhost.crt", "test/images/agnhost/porter/localhost.key",
		"test/images/kitten/html/kitten.jpg", "test/images/kitten/html/data.json"} {
		write(f, f)
	}
	v := &images.Versions{Components: []images.Component{
		{Name: "busybox", Version: "1:1.0-1", Package: "busybox-static", Use: images.UseImage},
		{Name: "conformance", Version: "v1.37.2", Module: "example.com/suite", Use: images.UseHost, OnDemand: true},
		{Name: "e2e-userland", Version: "12.15", Package: "curl", Use: images.UseImage, OnDemand: true},
	}}
	im := images.Image{Name: "e2e-kitten", Repository: "registry.k8s.io/e2e-test-images/kitten", Tag: "1.8",
		From: "busybox", With: []string{"conformance", "e2e-userland"}, For: "conformance"}
	o := &Options{SrcDir: src, CacheDir: t.TempDir(), Versions: v}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	byName := map[string]*plan{"busybox": {key: "b"}, "conformance": {key: "c"}, "e2e-userland": {key: "u"}}
	key := func() string {
		t.Helper()
		pl, err := imagePlan(context.Background(), o, im, byName)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pl.deps, []string{"busybox", "conformance", "e2e-userland"}) || pl.use != images.UseHost {
			t.Errorf("deps %v use %s", pl.deps, pl.use)
		}
		if n := len(pl.keyInput.(imageInput).Sources); n != 4 {
			t.Errorf("%d module files in the key input, want 4", n)
		}
		return pl.key
	}
	k0 := key()
	if key() != k0 {
		t.Fatal("equal inputs gave different keys")
	}
	for name, change := range map[string]func(){
		"with component": func() { byName["e2e-userland"].key = "u2" },
		"suite":          func() { byName["conformance"].key = "c2" },
		"base":           func() { byName["busybox"].key = "b2" },
		"module file":    func() { write("test/images/kitten/html/data.json", "changed") },
	} {
		change()
		if k := key(); k == k0 {
			t.Errorf("changing the %s did not change the key", name)
		} else {
			k0 = k
		}
	}

	// The recipe copies from e2e-userland: it must be in the image's with.
	im.With = []string{"conformance"}
	if _, err := imagePlan(context.Background(), o, im, byName); err == nil || !strings.Contains(err.Error(), "e2e-userland, which is not in its with") {
		t.Errorf("copy from a component not in with: err = %v", err)
	}
}
