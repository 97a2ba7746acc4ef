package app

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// No FILE, or a FILE that is not an image archive, is exit status 2 with
// its name, before any cluster is looked at; good files for a cluster
// that does not exist get past the check.
func TestImagesLoadRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "index.json", Mode: 0o644, Size: 2})
	tw.Write([]byte("{}"))
	tw.Close()
	good := filepath.Join(dir, "good.tar")
	os.WriteFile(good, b.Bytes(), 0o644)
	text := filepath.Join(dir, "notes.txt")
	os.WriteFile(text, []byte(strings.Repeat("not an archive\n", 100)), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"images", "load", "--data-dir", dir}, "at least one FILE"},
		{[]string{"images", "load", "--data-dir", dir, good, filepath.Join(dir, "missing.tar")}, "missing.tar"},
		{[]string{"images", "load", "--data-dir", dir, "--pin", good, text}, text + " is not a tar archive"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 with %q", tc.args, code, stderr, tc.want)
		}
	}
	code, _, stderr := run(t, "images", "load", "--data-dir", dir, "--name", "nope", good)
	if code != 1 || !strings.Contains(stderr, `no such cluster "nope"`) {
		t.Errorf("no cluster: exit %d, %q", code, stderr)
	}
	// An argument that is neither a file nor an image kubeup builds: exit 2
	// listing the images; a known image for a cluster that does not exist
	// fails on the cluster, before any build.
	code, _, stderr = run(t, "images", "load", "--data-dir", dir, good, "e2e-agnhostt")
	if code != 2 || !strings.Contains(stderr, "e2e-agnhostt is not a file") || !strings.Contains(stderr, "e2e-agnhost, ") {
		t.Errorf("unknown image: exit %d, %q", code, stderr)
	}
	code, _, stderr = run(t, "images", "load", "--data-dir", dir, "--cache-dir", filepath.Join(dir, "empty-cache"), "--name", "nope", "conformance")
	if code != 1 || !strings.Contains(stderr, `no such cluster "nope"`) {
		t.Errorf("image, no cluster: exit %d, %q", code, stderr)
	}
	code, _, stderr = run(t, "images", "load", "--data-dir", dir, "--name", "nope", text, "conformance")
	if code != 2 || !strings.Contains(stderr, text+" is not a tar archive") {
		t.Errorf("bad file beside an image: exit %d, %q", code, stderr)
	}
	if code, _, _ := run(t, "images", "load", "--pin=maybe", good); code == 0 {
		t.Error("--pin=maybe accepted")
	}
	// Targets: a role that is none, a machine or role the cluster lacks.
	state := filepath.Join(dir, "clusters", "demo", "state.json")
	os.MkdirAll(filepath.Dir(state), 0o755)
	os.WriteFile(state, []byte(`{"name":"demo","machines":[{"name":"master-0","role":"master"}]}`), 0o644)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--role", "worker"}, `--role "worker": want master or node`},
		{[]string{"--machine", "node-3"}, `--machine "node-3": cluster "demo" has master-0`},
		{[]string{"--role", "node"}, `--role node: cluster "demo" has no node`},
	} {
		args := append([]string{"images", "load", "--data-dir", dir, "--name", "demo", good}, tc.args...)
		code, _, stderr := run(t, args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 with %q", tc.args, code, stderr, tc.want)
		}
	}
}
