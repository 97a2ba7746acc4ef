package app

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/cmd/internal/clitest"
)

func run(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return clitest.Run(Binary, args...)
}

func TestRenderBadConfigWritesNothing(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bad.yaml")
	os.WriteFile(cfg, []byte("apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: Bad_Name}\nspec:\n  masters: {count: 2}\n  network: {podCIDR: 10.0.0.0/33}\n"), 0o644)
	out := filepath.Join(dir, "out")
	code, _, stderr := run(t, "render", "--config", cfg, "--out", out)
	if code != 2 {
		t.Errorf("exit %d, want 2", code)
	}
	for _, want := range []string{
		`metadata.name: "Bad_Name" is not a valid DNS label`,
		"spec.masters: 2 masters is an even number",
		`spec.network.podCIDR: "10.0.0.0/33" is not a CIDR`,
		"bad.yaml",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was created for a bad config", out)
	}
}

// A second YAML document would be ignored by the decoder: refused, naming
// the file and the line where it starts, and nothing written.
func TestRenderTwoDocumentsRefused(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "two.yaml")
	doc := "apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: one}\n"
	os.WriteFile(cfg, []byte(doc+"---\n"+strings.Replace(doc, "one", "two", 1)), 0o644)
	out := filepath.Join(dir, "out")
	code, _, stderr := run(t, "render", "--config", cfg, "--out", out)
	if want := cfg + ": invalid cluster config: line 4: a second YAML document starts here"; code != 2 || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, want 2 and %q in stderr:\n%s", code, want, stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("%s was created for a refused config", out)
	}
}

func TestRenderMissingConfig(t *testing.T) {
	code, _, stderr := run(t, "render", "--config", "/nonexistent/cluster.yaml", "--out", t.TempDir())
	if code != 2 || !strings.Contains(stderr, "/nonexistent/cluster.yaml") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

// fakeBinDir stands in for the directory of kubeup's binaries: render only
// hashes kubeup-addons to name the UI's image.
func fakeBinDir(t *testing.T) string {
	d := t.TempDir()
	os.WriteFile(filepath.Join(d, "kubeup-addons"), []byte("addons"), 0o755)
	return d
}

func TestRenderExample(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	binDir := fakeBinDir(t)
	code, stdout, stderr := run(t, "render", "--config", "../../../examples/cluster.yaml", "--out", out, "--bin-dir", binDir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "master-0") || !strings.Contains(stdout, "node-0") {
		t.Errorf("stdout: %s", stdout)
	}
	for _, p := range []string{"machines/master-0/seed.iso", "machines/node-0/seed.iso", "pki/kubernetes-ca.crt", "roles/node/units/kubeup-node.target"} {
		if _, err := os.Stat(filepath.Join(out, p)); err != nil {
			t.Error(err)
		}
	}
	// A second render reuses the PKI: the CA does not change.
	ca1, _ := os.ReadFile(filepath.Join(out, "pki/kubernetes-ca.crt"))
	if code, _, stderr := run(t, "render", "--config", "../../../examples/cluster.yaml", "--out", out, "--bin-dir", binDir); code != 0 {
		t.Fatal(stderr)
	}
	ca2, _ := os.ReadFile(filepath.Join(out, "pki/kubernetes-ca.crt"))
	if !bytes.Equal(ca1, ca2) {
		t.Error("second render made a new CA")
	}
}

func TestHelpForEveryCommand(t *testing.T) {
	e := &cli.Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}}
	for _, add := range Binary.Commands {
		c := add(e)
		if c.Short == "" {
			t.Errorf("%s has no help text", c.Name())
		}
	}
}
