package artifacts

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"

	"kubeup.dev/kubeup/images"
)

func TestPrometheusVersion(t *testing.T) {
	for in, want := range map[string]string{"v0.316.0": "3.16.0", "v0.300.1": "3.0.1", "v0.1005.2": "10.5.2"} {
		if got := PrometheusVersion(in); got != want {
			t.Errorf("PrometheusVersion(%s) = %s, want %s", in, got, want)
		}
	}
	// The image is tagged with Prometheus' version, not the module's.
	v := images.Pinned()
	c, _ := v.Component("prometheus")
	im, _ := v.Image("prometheus")
	if im.Tag != "v"+PrometheusVersion(c.Version) {
		t.Errorf("prometheus image tag %s for module %s", im.Tag, c.Version)
	}
}

func TestCopyModulePrunes(t *testing.T) {
	src, dst := t.TempDir(), filepath.Join(t.TempDir(), "copy")
	for _, f := range []string{"go.mod", "plugins/minimum.go", "plugins/plugin_aws.go", "plugins/sub/x.go", "web/ui/ui.go"} {
		p := filepath.Join(src, f)
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(f), 0o444) // read-only, as in the module cache
	}
	if err := copyModule(src, dst, map[string][]string{"plugins": {"minimum.go"}}); err != nil {
		t.Fatal(err)
	}
	var got []string
	filepath.WalkDir(dst, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			rel, _ := filepath.Rel(dst, p)
			got = append(got, filepath.ToSlash(rel))
		}
		return err
	})
	if want := []string{"go.mod", "plugins/minimum.go", "plugins/sub/x.go", "web/ui/ui.go"}; !slices.Equal(got, want) {
		t.Errorf("copied %q, want %q", got, want)
	}
	if err := os.WriteFile(filepath.Join(dst, "go.mod"), []byte("x"), 0o644); err != nil {
		t.Errorf("copy is not writable: %v", err)
	}
}

func TestGzipTree(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "app", "assets"), 0o755)
	os.WriteFile(filepath.Join(dir, "app", "index.html"), []byte("<html>"), 0o644)
	os.WriteFile(filepath.Join(dir, "app", "assets", "x.js"), []byte(strings.Repeat("x", 1000)), 0o644)
	if _, err := gzipTree(dir); err != nil {
		t.Fatal(err)
	}
	first, _ := os.ReadFile(filepath.Join(dir, "app", "index.html.gz"))
	zr, err := gzip.NewReader(bytes.NewReader(first))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(zr); string(b) != "<html>" {
		t.Errorf("index.html.gz holds %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "app", "index.html")); !os.IsNotExist(err) {
		t.Error("the uncompressed file is still there")
	}
	// Deterministic: no name or time in the gzip header.
	os.Remove(filepath.Join(dir, "app", "index.html.gz"))
	os.WriteFile(filepath.Join(dir, "app", "index.html"), []byte("<html>"), 0o644)
	gzipTree(dir)
	if again, _ := os.ReadFile(filepath.Join(dir, "app", "index.html.gz")); !bytes.Equal(first, again) {
		t.Error("gzip output differs between runs")
	}
	if _, err := gzipTree(t.TempDir()); err == nil {
		t.Error("an empty UI output was accepted")
	}
}

// TestCollectorModulesOneRelease keeps images/modules/otelcol on one
// collector release: core modules v0.N.0 (and their stable v1 twins, which
// the release notes pair with it), contrib modules at the pinned version.
func TestCollectorModulesOneRelease(t *testing.T) {
	c, _ := images.Pinned().Component("otelcol")
	minor := strings.Split(c.Version, ".")[1] // v0.165.1 -> 165
	path := filepath.Join("..", "modules", "otelcol", "go.mod")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse(path, data, nil)
	if err != nil {
		t.Fatal(err)
	}
	stable := ""
	for _, r := range f.Require {
		p, v := r.Mod.Path, r.Mod.Version
		switch {
		case strings.HasPrefix(p, "github.com/open-telemetry/opentelemetry-collector-contrib/"):
			if v != c.Version {
				t.Errorf("%s %s, want %s", p, v, c.Version)
			}
		case strings.HasPrefix(p, "go.opentelemetry.io/collector"):
			if strings.HasPrefix(v, "v0.") && v != "v0."+minor+".0" {
				t.Errorf("%s %s, want v0.%s.0", p, v, minor)
			}
			if strings.HasPrefix(v, "v1.") {
				if stable == "" {
					stable = v
				}
				if v != stable {
					t.Errorf("%s %s, but other stable collector modules are %s", p, v, stable)
				}
			}
		}
	}
}

// TestApplyEdit: an edit changes the one place it names; code that is not
// there, or is there twice, fails naming the file.
func TestApplyEdit(t *testing.T) {
	src := t.TempDir()
	file := filepath.Join(src, "internal", "events.go")
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o444); err != nil {
			t.Fatal(err)
		}
	}
	e := sourceEdit{Path: "internal/events.go", Old: "timeout = 10 * time.Second", New: "timeout = 1 * time.Minute"}
	write("const (\n\ttimeout = 10 * time.Second\n)\n")
	os.Chmod(file, 0o644)
	if err := applyEdit(src, e); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(file); string(b) != "const (\n\ttimeout = 1 * time.Minute\n)\n" {
		t.Errorf("edited: %q", b)
	}
	if err := applyEdit(src, e); err == nil || !strings.Contains(err.Error(), "internal/events.go has no") {
		t.Errorf("edit of moved code: err = %v", err)
	}
	write("timeout = 10 * time.Second\ntimeout = 10 * time.Second\n")
	os.Chmod(file, 0o644)
	if err := applyEdit(src, e); err == nil || !strings.Contains(err.Error(), "2 times") {
		t.Errorf("edit of code there twice: err = %v", err)
	}
}

// TestContainerdEditsMatchPinned: the containerd edits apply to the pinned
// containerd's source (from the module cache; skipped when it is not there).
func TestContainerdEditsMatchPinned(t *testing.T) {
	c, ok := images.Pinned().Component("containerd")
	if !ok {
		t.Fatal("no containerd in versions.yaml")
	}
	r, _ := buildRecipeFor(c, 0)
	if r.Patch == nil || len(r.Patch.Edits) != 2 {
		t.Fatalf("containerd's recipe patches %+v, want the two event timeout edits", r.Patch)
	}
	out, err := exec.Command("go", "env", "GOMODCACHE").Output()
	if err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "github.com", "containerd", "containerd", "v2@"+c.Version)
	if _, err := os.Stat(dir); err != nil {
		t.Skipf("containerd %s is not in the module cache: %v", c.Version, err)
	}
	copyDir := t.TempDir()
	for _, e := range r.Patch.Edits {
		b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(e.Path)))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(copyDir, filepath.FromSlash(e.Path))
		os.MkdirAll(filepath.Dir(dst), 0o755)
		if err := os.WriteFile(dst, b, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := applyEdit(copyDir, e); err != nil {
			t.Error(err)
		}
	}
}
