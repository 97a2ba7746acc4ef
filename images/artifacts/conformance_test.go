package artifacts

import (
	"context"
	"errors"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"

	"kubeup.dev/kubeup/images"
)

func conformanceComponent(t *testing.T) images.Component {
	t.Helper()
	c, ok := images.Pinned().Component("conformance")
	if !ok {
		t.Fatal("versions.yaml has no conformance component")
	}
	return c
}

// TestConformanceRecipe pins what the conformance recipe builds: e2e.test as
// a test binary with Kubernetes' version stamps, ginkgo and agnhost.
func TestConformanceRecipe(t *testing.T) {
	c := conformanceComponent(t)
	r, ok := buildRecipeFor(c, 1700000000)
	if !ok {
		t.Fatal("no recipe")
	}
	byOutput := map[string]goBuild{}
	var outputs []string
	for _, b := range r.Builds {
		byOutput[b.Output] = b
		outputs = append(outputs, b.Output)
	}
	want := []string{"usr/local/bin/e2e.test", "usr/local/bin/ginkgo", "usr/local/bin/agnhost"}
	if !slices.Equal(outputs, want) {
		t.Fatalf("outputs %v, want %v", outputs, want)
	}
	if len(r.Links) != 0 || r.Patch != nil {
		t.Errorf("links %v, patch %v: want none", r.Links, r.Patch)
	}

	e2e := byOutput["usr/local/bin/e2e.test"]
	if e2e.Package != "k8s.io/kubernetes/test/e2e" || !e2e.Test {
		t.Errorf("e2e.test: package %q test %v, want the test binary of k8s.io/kubernetes/test/e2e", e2e.Package, e2e.Test)
	}
	ld := strings.Join(e2e.LDFlags, " ")
	for _, w := range []string{
		"-s -w",
		"-X k8s.io/component-base/version.gitVersion=v1.37.2",
		"-X k8s.io/component-base/version.gitMajor=1",
		"-X k8s.io/component-base/version.gitMinor=37",
		"-X k8s.io/component-base/version.gitTreeState=clean",
		"-X k8s.io/component-base/version.buildDate=2023-11-14T22:13:20Z",
		"-X k8s.io/client-go/pkg/version.gitVersion=v1.37.2",
	} {
		if !strings.Contains(ld, w) {
			t.Errorf("e2e.test ldflags %q lack %q", ld, w)
		}
	}
	// The suite reports the same version as the cluster's binaries.
	k, _ := images.Pinned().Component("kubernetes")
	kr, _ := buildRecipeFor(k, 1700000000)
	if kld := strings.Join(kr.Builds[0].LDFlags, " "); kld != ld {
		t.Errorf("e2e.test ldflags %q differ from kubernetes' %q", ld, kld)
	}
	if !slices.Equal(e2e.Tags, []string{"selinux", "notest", "grpcnotrace"}) {
		t.Errorf("e2e.test tags %v, want upstream's selinux,notest,grpcnotrace", e2e.Tags)
	}

	if g := byOutput["usr/local/bin/ginkgo"]; g.Package != "github.com/onsi/ginkgo/v2/ginkgo" || g.Test {
		t.Errorf("ginkgo: %+v", g)
	}
	a := byOutput["usr/local/bin/agnhost"]
	if a.Package != "k8s.io/kubernetes/test/images/agnhost" || a.Test {
		t.Errorf("agnhost: %+v", a)
	}
	if ld := strings.Join(a.LDFlags, " "); !strings.Contains(ld, "-X main.Version="+AgnhostVersion) {
		t.Errorf("agnhost ldflags %q do not stamp version %s", ld, AgnhostVersion)
	}
	for _, b := range r.Builds {
		if b.CGO {
			t.Errorf("%s: cgo", b.Output)
		}
	}
}

func TestGoBuildArgsTest(t *testing.T) {
	b := goBuild{Package: "k8s.io/kubernetes/test/e2e", Test: true, Tags: []string{"a", "b"}, LDFlags: []string{"-s", "-w"}}
	got := strings.Join(goBuildArgs(b, "/out/e2e.test", ""), " ")
	if want := "test -c -vet=off -trimpath -tags a,b -ldflags -s -w -o /out/e2e.test k8s.io/kubernetes/test/e2e"; got != want {
		t.Errorf("test build: %q, want %q", got, want)
	}
	b.Test = false
	got = strings.Join(goBuildArgs(b, "/out/e2e", ""), " ")
	if want := "build -trimpath -tags a,b -ldflags -s -w -o /out/e2e k8s.io/kubernetes/test/e2e"; got != want {
		t.Errorf("program build: %q, want %q", got, want)
	}
}

// TestConformanceOnDemand: a plain `kubeup artifacts` (make deps, image
// builds) leaves the conformance suite out; naming it builds it.
func TestConformanceOnDemand(t *testing.T) {
	v := images.Pinned()
	comps, _, err := selected(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(comps, "conformance") {
		t.Errorf("all = %v: includes the on-demand conformance suite", comps)
	}
	if !slices.Contains(comps, "pulumi") || !slices.Contains(comps, "kubernetes") {
		t.Errorf("all = %v: lacks pulumi or kubernetes", comps)
	}
	comps, imgs, err := selected(v, []string{"conformance"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(comps, []string{"conformance"}) || len(imgs) != 0 {
		t.Errorf("--only conformance = %v %v", comps, imgs)
	}
}

// kubernetesModuleDir is where the pinned k8s.io/kubernetes is in the module
// cache; the test is skipped when it is not there (nothing is downloaded).
func kubernetesModuleDir(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "k8s.io/kubernetes")
	cmd.Dir = filepath.Join("..", "modules", "conformance")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOPROXY=off", "GOTOOLCHAIN=local")
	out, err := cmd.Output()
	dir := strings.TrimSpace(string(out))
	if err != nil || dir == "" {
		t.Skipf("k8s.io/kubernetes is not in the module cache (go list: %v); `go mod download` in images/modules/conformance", err)
	}
	return dir
}

// TestConformanceSuiteImports: the wrapper's suite.go names every package
// upstream's e2e_test.go imports, so that go.sum has what `go test -c
// k8s.io/kubernetes/test/e2e` needs.
func TestConformanceSuiteImports(t *testing.T) {
	imports := func(path string) []string {
		t.Helper()
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range f.Imports {
			p, _ := strconv.Unquote(s.Path.Value)
			out = append(out, p)
		}
		return out
	}
	ours := imports(filepath.Join("..", "modules", "conformance", "suite.go"))
	upstream := imports(filepath.Join(kubernetesModuleDir(t), "test", "e2e", "e2e_test.go"))
	if len(upstream) < 20 {
		t.Fatalf("upstream e2e_test.go imports only %v", upstream)
	}
	for _, p := range upstream {
		if !strings.Contains(p, ".") { // the standard library
			continue
		}
		if !slices.Contains(ours, p) {
			t.Errorf("images/modules/conformance/suite.go does not import %s (upstream's e2e_test.go does); add it and run go mod tidy", p)
		}
	}
	if !slices.Contains(ours, "k8s.io/kubernetes/test/e2e") {
		t.Error("suite.go does not import the package under test")
	}
}

// TestAgnhostVersion: AgnhostVersion is the pinned module's agnhost VERSION
// and the agnhost tag its e2e suite runs.
func TestAgnhostVersion(t *testing.T) {
	dir := kubernetesModuleDir(t)
	b, err := os.ReadFile(filepath.Join(dir, "test", "images", "agnhost", "VERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if v := strings.TrimSpace(string(b)); v != AgnhostVersion {
		t.Errorf("test/images/agnhost/VERSION is %s, AgnhostVersion %s", v, AgnhostVersion)
	}
	b, err = os.ReadFile(filepath.Join(dir, "test", "utils", "image", "manifest.go"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`configs\[Agnhost\] = Config\{[^,]+, "agnhost", "([^"]+)"\}`).FindSubmatch(b)
	if m == nil {
		t.Fatal("test/utils/image/manifest.go: no configs[Agnhost]")
	}
	if string(m[1]) != AgnhostVersion {
		t.Errorf("the e2e suite runs agnhost %s, AgnhostVersion is %s", m[1], AgnhostVersion)
	}
}

// TestIntegrationConformance runs the conformance tools from the cache (it
// never builds them: `kubeup artifacts --only conformance` does, in about half
// an hour on 2 cores).
func TestIntegrationConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: checks the built conformance tools; skipped under -short")
	}
	epoch, err := SourceDateEpochFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	set, err := Ensure(context.Background(), Options{
		Only: []string{"conformance"}, SourceDateEpoch: epoch, CacheOnly: true, Progress: testWriter{t},
	})
	if errors.Is(err, ErrNotCached) {
		t.Skipf("integration: %v; build it with `kubeup artifacts --only conformance`", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	a := set.Component("conformance")
	c := conformanceComponent(t)
	if out := runArtifact(t, a.Path("usr/local/bin/e2e.test"), "--version"); !strings.Contains(out, c.Version) {
		t.Errorf("e2e.test --version printed %q, want %s", out, c.Version)
	}
	images := runArtifact(t, a.Path("usr/local/bin/e2e.test"), "--list-images")
	if !strings.Contains(images, "registry.k8s.io/e2e-test-images/agnhost:"+AgnhostVersion+"\n") {
		t.Errorf("e2e.test --list-images does not list agnhost %s:\n%s", AgnhostVersion, images)
	}
	if out := runArtifact(t, a.Path("usr/local/bin/agnhost"), "--version"); !strings.Contains(out, AgnhostVersion) {
		t.Errorf("agnhost --version printed %q, want %s", out, AgnhostVersion)
	}
	// ginkgo is the version e2e.test links (the wrapper's go.mod has one).
	f, err := os.ReadFile(filepath.Join("..", "modules", "conformance", "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	mf, err := modfile.Parse("go.mod", f, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := ""
	for _, r := range mf.Require {
		if r.Mod.Path == "github.com/onsi/ginkgo/v2" {
			want = strings.TrimPrefix(r.Mod.Version, "v")
		}
	}
	if out := runArtifact(t, a.Path("usr/local/bin/ginkgo"), "version"); want == "" || !strings.Contains(out, "Version "+want) {
		t.Errorf("ginkgo version printed %q, want %q", out, want)
	}
}
