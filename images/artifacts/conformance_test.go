package artifacts

import (
	"archive/tar"
	"context"
	"debug/elf"
	"errors"
	"go/parser"
	"go/token"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
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
// builds) leaves the conformance suite, its images and what only they are
// made from out; naming the suite builds all of them.
func TestConformanceOnDemand(t *testing.T) {
	v := images.Pinned()
	comps, imgs, err := selected(v, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"conformance", "sample-apiserver", "e2e-userland", "nginx"} {
		if slices.Contains(comps, n) {
			t.Errorf("all = %v: includes the on-demand %s", comps, n)
		}
	}
	for _, n := range imgs {
		if strings.HasPrefix(n, "e2e-") {
			t.Errorf("all = %v: includes the conformance image %s", imgs, n)
		}
	}
	if !slices.Contains(comps, "pulumi") || !slices.Contains(comps, "kubernetes") || !slices.Contains(imgs, "pause") {
		t.Errorf("all = %v %v: lacks pulumi, kubernetes or the pause image", comps, imgs)
	}
	comps, imgs, err = selected(v, []string{"conformance"})
	if err != nil {
		t.Fatal(err)
	}
	wantComps := []string{"etcd", "pause", "busybox", "conformance", "sample-apiserver", "e2e-userland", "nginx"}
	wantImgs := []string{"e2e-agnhost", "e2e-agnhost-prev", "e2e-busybox", "e2e-pause", "e2e-kitten", "e2e-nautilus", "e2e-nonewprivs", "e2e-glibc-dns-testing", "e2e-nginx", "e2e-etcd", "e2e-sample-apiserver"}
	if !slices.Equal(comps, wantComps) || !slices.Equal(imgs, wantImgs) {
		t.Errorf("--only conformance = %v %v, want %v %v", comps, imgs, wantComps, wantImgs)
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

// TestConformanceImageNames: every image built for the conformance suite has
// a reference the pinned suite names (test/utils/image/manifest.go, with its
// default registries), and agnhost's is AgnhostVersion.
func TestConformanceImageNames(t *testing.T) {
	v := images.Pinned()
	var ours []images.Image
	for _, im := range v.Images {
		if im.For == ConformanceSuite {
			ours = append(ours, im)
		}
	}
	if len(ours) == 0 {
		t.Fatal("no images for the conformance suite")
	}
	if im, _ := v.Image("e2e-agnhost"); im.Ref() != "registry.k8s.io/e2e-test-images/agnhost:"+AgnhostVersion {
		t.Errorf("e2e-agnhost is %s, want agnhost %s", im.Ref(), AgnhostVersion)
	}
	b, err := os.ReadFile(filepath.Join(kubernetesModuleDir(t), "test", "utils", "image", "manifest.go"))
	if err != nil {
		t.Fatal(err)
	}
	registries := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s+(\w+Registry):\s+"([^"]+)",`).FindAllSubmatch(b, -1) {
		registries[string(m[1])] = string(m[2])
	}
	suite := map[string]bool{}
	for _, m := range regexp.MustCompile(`configs\[\w+\] = Config\{list\.(\w+), "([^"]+)", "([^"]+)"\}`).FindAllSubmatch(b, -1) {
		suite[registries[string(m[1])]+"/"+string(m[2])+":"+string(m[3])] = true
	}
	if !suite["registry.k8s.io/pause:3.10.2"] {
		t.Fatalf("manifest.go not understood: %v", suite)
	}
	for _, im := range ours {
		if !suite[im.Ref()] {
			t.Errorf("image %s: the suite runs no %s", im.Name, im.Ref())
		}
	}
}

// TestIntegrationConformanceImages checks the built conformance images from
// the cache (`kubeup artifacts --only conformance` builds them): each loads
// under the name e2e.test lists, with its recipe's config, agnhost's has the
// tools the specs run, and every program of the Debian userlands finds its
// shared libraries.
func TestIntegrationConformanceImages(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: checks the built conformance images; skipped under -short")
	}
	epoch, err := SourceDateEpochFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Only: []string{ConformanceSuite}, SourceDateEpoch: epoch, CacheOnly: true, Progress: testWriter{t}}
	set, err := Ensure(context.Background(), o)
	if errors.Is(err, ErrNotCached) {
		t.Skipf("integration: %v; build them with `kubeup artifacts --only conformance`", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	paths, err := ConformanceImages(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	listed := runArtifact(t, set.Component(ConformanceSuite).Path("usr/local/bin/e2e.test"), "--list-images")
	v := images.Pinned()
	n := 0
	for _, im := range v.Images {
		if im.For != ConformanceSuite {
			continue
		}
		n++
		t.Run(im.Name, func(t *testing.T) {
			a := set.Image(im.Name)
			if a == nil || a.Image == nil || !slices.Contains(paths, a.TarballPath()) {
				t.Fatalf("no image artifact %s among %v", im.Name, paths)
			}
			if !strings.Contains(listed, im.Ref()+"\n") {
				t.Errorf("e2e.test --list-images does not list %s", im.Ref())
			}
			tag, _ := name.NewTag(im.Ref())
			img, err := tarball.ImageFromPath(a.TarballPath(), &tag)
			if err != nil {
				t.Fatal(err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			r, _ := imageRecipeFor(im.Name)
			if !slices.Equal(cf.Config.Entrypoint, r.Entrypoint) || !slices.Equal(cf.Config.Cmd, r.Cmd) || cf.Config.User != r.User {
				t.Errorf("config %+v, want the recipe's %q %q %q", cf.Config, r.Entrypoint, r.Cmd, r.User)
			}
			if d, _ := img.Digest(); d.String() != a.Image.Digest {
				t.Errorf("digest %s, manifest says %s", d, a.Image.Digest)
			}
			fi, _ := os.Stat(a.TarballPath())
			t.Logf("%s %s %s", im.Ref(), a.Image.Digest, humanSize(fi.Size()))
			if im.Name != "e2e-agnhost" {
				return
			}
			rc := mutate.Extract(img) // its layers flattened
			defer rc.Close()
			have := map[string]string{}
			tr := tar.NewReader(rc)
			for {
				hdr, err := tr.Next()
				if err != nil {
					break
				}
				content := hdr.Linkname
				if strings.HasPrefix(hdr.Name, "etc/") {
					b, _ := io.ReadAll(tr)
					content = string(b)
				}
				have[strings.TrimSuffix(hdr.Name, "/")] = content
			}
			for _, p := range []string{"agnhost", "agnhost-2", "localhost.crt", "localhost.key", "uploads", "bin/sh", "bin/bash",
				"bin/nc", "bin/nc.openbsd", "bin/wget", "bin/ip", "usr/bin/curl", "usr/bin/dig", "usr/bin/getent", "usr/bin/nslookup",
				"lib64/ld-linux-x86-64.so.2"} {
				if _, ok := have[p]; !ok {
					t.Errorf("agnhost image has no /%s", p)
				}
			}
			if !strings.Contains(have["etc/passwd"], "user-defined-in-image:x:1000:") || !strings.Contains(have["etc/group"], "group-defined-in-image:x:50000:user-defined-in-image") {
				t.Errorf("passwd %q group %q", have["etc/passwd"], have["etc/group"])
			}
			if have["bin/sh"] != "bash" || have["bin/nc"] != "nc.openbsd" {
				t.Errorf("/bin/sh -> %q, /bin/nc -> %q", have["bin/sh"], have["bin/nc"])
			}
		})
	}
	if len(paths) != n {
		t.Errorf("ConformanceImages gave %d tarballs, versions.yaml has %d images for the suite", len(paths), n)
	}
	t.Run("one archive", func(t *testing.T) {
		archive, err := ConformanceArchive(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if cache, _ := DefaultCacheDir(); !strings.HasPrefix(archive, filepath.Join(cache, "archives")+string(filepath.Separator)) {
			t.Errorf("archive %s is not in the cache's archives/ (%s)", archive, cache)
		}
		var separate int64
		for _, im := range v.Images {
			if im.For != ConformanceSuite {
				continue
			}
			a := set.Image(im.Name)
			fi, _ := os.Stat(a.TarballPath())
			separate += fi.Size()
			tag, _ := name.NewTag(im.Ref())
			img, err := tarball.ImageFromPath(archive, &tag)
			if err != nil {
				t.Fatalf("%s: %v", im.Ref(), err)
			}
			if d, _ := img.Digest(); d.String() != a.Image.Digest {
				t.Errorf("%s: digest %s in the archive, built %s", im.Ref(), d, a.Image.Digest)
			}
		}
		fi, _ := os.Stat(archive)
		t.Logf("%s: %s (the %d tarballs: %s)", archive, humanSize(fi.Size()), n, humanSize(separate))
		// agnhost's second tag, kitten's and nautilus's agnhost layers and
		// glibc-dns-testing's tools layer are in it once.
		if fi.Size() > separate*2/3 {
			t.Errorf("the archive is %s of the tarballs' %s: layers not shared", humanSize(fi.Size()), humanSize(separate))
		}
	})
	for _, c := range []string{"e2e-userland", "nginx"} {
		t.Run("shared libraries/"+c, func(t *testing.T) { checkSharedLibraries(t, set.Component(c)) })
	}
}

// checkSharedLibraries fails for every ELF file of a component whose
// DT_NEEDED libraries are neither in the loader's directories nor beside it
// (glibc's gconv modules find theirs with $ORIGIN).
func checkSharedLibraries(t *testing.T, a *Artifact) {
	t.Helper()
	have := map[string]bool{}
	for _, f := range a.Files {
		have[f.Path] = true
	}
	found := func(dir, lib string) bool {
		for _, d := range []string{"lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib", dir} {
			if have[path.Join(d, lib)] {
				return true
			}
		}
		return false
	}
	programs := 0
	for _, f := range a.Files {
		if f.Link != "" {
			continue
		}
		ef, err := elf.Open(a.Path(f.Path))
		if err != nil {
			continue // not an ELF file
		}
		needed, err := ef.ImportedLibraries()
		ef.Close()
		if err != nil {
			t.Errorf("%s: %v", f.Path, err)
			continue
		}
		programs++
		for _, n := range needed {
			if !found(path.Dir(f.Path), n) {
				t.Errorf("%s needs %s, which %s does not have", f.Path, n, a.Name)
			}
		}
	}
	if programs == 0 {
		t.Errorf("%s has no ELF files", a.Name)
	}
}

// FindImage takes an image's name, its reference, or the suite; anything
// else is ErrUnknownImage listing what there is.
func TestFindImage(t *testing.T) {
	t.Parallel()
	v := images.Pinned()
	var nginx images.Image
	for _, im := range v.Images {
		if im.Name == "e2e-nginx" {
			nginx = im
		}
	}
	for in, want := range map[string]string{"coredns": "coredns", "e2e-nginx": "e2e-nginx", nginx.Ref(): "e2e-nginx", ConformanceSuite: ConformanceSuite} {
		if got, err := FindImage(v, in); err != nil || got != want {
			t.Errorf("FindImage(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"nginx", "registry.k8s.io/e2e-test-images/nginx:0.0.1", "./image.tar", ""} {
		_, err := FindImage(v, in)
		if !errors.Is(err, ErrUnknownImage) || !strings.Contains(err.Error(), strconv.Quote(in)) || !strings.Contains(err.Error(), "e2e-agnhost") {
			t.Errorf("FindImage(%q): %v, want ErrUnknownImage naming it and listing the images", in, err)
		}
	}
}

// ImageArchive finds a cached image's tarball (testbox: make build
// caches it) and refuses an unknown name without building anything.
func TestIntegrationImageArchive(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: needs the artifact cache; skipped under -short")
	}
	epoch, err := SourceDateEpochFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	o := Options{SourceDateEpoch: epoch, CacheOnly: true}
	path, err := ImageArchive(context.Background(), o, "testbox")
	if errors.Is(err, ErrNotCached) {
		t.Skipf("integration: %v (make build caches testbox)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tarball.ImageFromPath(path, nil); err != nil {
		t.Errorf("%s: not a docker archive: %v", path, err)
	}
	if _, err := ImageArchive(context.Background(), o, "nope"); !errors.Is(err, ErrUnknownImage) {
		t.Errorf("nope: %v, want ErrUnknownImage", err)
	}
}
