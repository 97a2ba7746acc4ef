package mirror

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"
	digest "github.com/opencontainers/go-digest"

	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/images/preload"
)

const testRef = "registry.k8s.io/kubeup-test/mirror:1"

// TestIntegrationContainerdMirror runs a real containerd (the cached
// containerd artifact, as `kubeup artifacts` builds it, or containerd and
// ctr from $PATH), imports an image into namespace k8s.io, serves that
// namespace with Handler and NewContainerdStore, and pulls the image into
// another namespace through the mirror: with namespaces isolated, that pull
// fetches every manifest and blob from the mirror.
func TestIntegrationContainerdMirror(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs containerd; skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("integration: containerd needs root")
	}
	containerd, ctr := findContainerd(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "state", "containerd.sock")

	// The store dials lazily: made before containerd runs, it works once it does.
	store, err := NewContainerdStore(sock, "k8s.io")
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.Resolve(context.Background(), testRef); err == nil {
		t.Fatal("Resolve succeeded without containerd")
	}

	startContainerd(t, containerd, ctr, dir, sock)
	run := func(args ...string) string {
		t.Helper()
		start := time.Now()
		cmd := exec.Command(ctr, append([]string{"--address", sock}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ctr %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		t.Logf("ctr %s (%v)", strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
		return string(out)
	}

	idx, img := testImage(t)
	archive := filepath.Join(dir, "image.tar")
	writeOCIArchive(t, archive, idx)
	run("-n", "k8s.io", "images", "import", "--no-unpack", archive)
	if out := run("-n", "k8s.io", "images", "ls", "-q"); !strings.Contains(out, testRef) {
		t.Fatalf("import did not name the image %s:\n%s", testRef, out)
	}

	// The store reaches the namespace, and tells what is missing.
	ctx := context.Background()
	idxDigest, _ := idx.Digest()
	if desc, err := store.Resolve(ctx, testRef); err != nil || desc.Digest.String() != idxDigest.String() || desc.MediaType != string(types.OCIImageIndex) {
		t.Fatalf("Resolve(%s) = %+v, %v; want the index %s", testRef, desc, err, idxDigest)
	}
	if _, err := store.Resolve(ctx, "registry.k8s.io/kubeup-test/mirror:2"); !errdefs.IsNotFound(err) {
		t.Errorf("Resolve of a missing tag: %v, want not found", err)
	}
	if _, err := store.Info(ctx, digest.FromString("absent")); !errdefs.IsNotFound(err) {
		t.Errorf("Info of a missing blob: %v, want not found", err)
	}

	// The mirror, counting what it serves.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	var mu sync.Mutex
	served := map[string]int{} // "GET /v2/.../blobs/sha256:... 200" -> count
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		Handler(store, log).ServeHTTP(rec, r)
		mu.Lock()
		served[fmt.Sprintf("%s %s?%s %d", r.Method, r.URL.Path, r.URL.RawQuery, rec.status)]++
		mu.Unlock()
	})}
	go srv.Serve(ln)
	defer srv.Close()

	hosts := filepath.Join(dir, "certs.d")
	if err := os.MkdirAll(filepath.Join(hosts, "registry.k8s.io"), 0o755); err != nil {
		t.Fatal(err)
	}
	toml := fmt.Sprintf("server = \"https://registry.k8s.io\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", ln.Addr())
	if err := os.WriteFile(filepath.Join(hosts, "registry.k8s.io", "hosts.toml"), []byte(toml), 0o644); err != nil {
		t.Fatal(err)
	}

	run("-n", "mirror-test", "images", "pull", "--hosts-dir", hosts, "--platform", "linux/"+runtime.GOARCH, testRef)

	out := run("-n", "mirror-test", "images", "ls")
	if !strings.Contains(out, testRef) || !strings.Contains(out, idxDigest.String()) {
		t.Errorf("the pulled image is not %s %s:\n%s", testRef, idxDigest, out)
	}
	// The image was unpacked: every layer's content arrived intact.
	if out := run("-n", "mirror-test", "snapshots", "ls"); strings.Count(out, "Committed") < 2 {
		t.Errorf("pulled image not unpacked into two committed snapshots:\n%s", out)
	}

	mu.Lock()
	defer mu.Unlock()
	var lines []string
	for k, n := range served {
		lines = append(lines, fmt.Sprintf("%dx %s", n, k))
	}
	sort.Strings(lines)
	t.Logf("the mirror served:\n%s", strings.Join(lines, "\n"))
	const q = "?ns=registry.k8s.io 200"
	mf, _ := img.Digest()
	cfg, _ := img.ConfigName()
	want := []string{
		"HEAD /v2/kubeup-test/mirror/manifests/1" + q,
		"GET /v2/kubeup-test/mirror/manifests/" + idxDigest.String() + q,
		"GET /v2/kubeup-test/mirror/manifests/" + mf.String() + q,
		"GET /v2/kubeup-test/mirror/blobs/" + cfg.String() + q,
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		d, _ := l.Digest()
		want = append(want, "GET /v2/kubeup-test/mirror/blobs/"+d.String()+q)
	}
	for _, w := range want {
		if served[w] == 0 {
			t.Errorf("the mirror did not serve %s", w)
		}
	}
}

// findContainerd returns the containerd and ctr binaries: the cached
// containerd artifact, else $PATH's; it skips the test without them.
func findContainerd(t *testing.T) (containerd, ctr string) {
	epoch, err := artifacts.SourceDateEpochFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	set, err := artifacts.Ensure(context.Background(), artifacts.Options{Only: []string{"containerd"}, SourceDateEpoch: epoch, CacheOnly: true})
	if err == nil {
		a := set.Component("containerd")
		return a.Path("usr/local/bin/containerd"), a.Path("usr/local/bin/ctr")
	}
	if !errors.Is(err, artifacts.ErrNotCached) {
		t.Fatal(err)
	}
	c, err1 := exec.LookPath("containerd")
	r, err2 := exec.LookPath("ctr")
	if err1 != nil || err2 != nil {
		t.Skipf("integration: no containerd: %v; run `kubeup artifacts --only containerd` or put containerd and ctr on $PATH", err)
	}
	return c, r
}

// startContainerd runs containerd with its state under dir, without the CRI
// plugins (as images/preload does), until the test ends. Its content
// sharing policy is "isolated": with containerd's default, "shared", a
// namespace may use any blob already on disk, and a pull into a second
// namespace only resolves the tag (the mirror served a single HEAD).
func startContainerd(t *testing.T, containerd, ctr, dir, sock string) {
	t.Helper()
	cfg := filepath.Join(dir, "containerd.toml")
	conf := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = %s
[grpc]
address = %q
[plugins."io.containerd.metadata.v1.bolt"]
content_sharing_policy = "isolated"
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), preload.DisabledPlugins(), sock)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "containerd.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(containerd, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("containerd log:\n%s", b)
		}
	})
	for {
		if err := exec.Command(ctr, "--address", sock, "version").Run(); err == nil {
			t.Logf("containerd is up after %v", time.Since(start).Round(time.Millisecond))
			return
		}
		select {
		case <-done:
			b, _ := os.ReadFile(logPath)
			t.Fatalf("containerd exited:\n%s", b)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Since(start) > 30*time.Second {
			t.Fatal("containerd did not start within 30s")
		}
	}
}

// testImage is an OCI index over one linux image of two random 1 MiB
// layers (more than one read chunk each, once compressed).
func testImage(t *testing.T) (v1.ImageIndex, v1.Image) {
	t.Helper()
	img, err := random.Image(1<<20, 2)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	idx := mutate.AppendManifests(mutate.IndexMediaType(empty.Index, types.OCIImageIndex), mutate.IndexAddendum{
		Add:        img,
		Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: runtime.GOARCH}},
	})
	return idx, img
}

// writeOCIArchive writes idx as an OCI image layout tarball naming it testRef.
func writeOCIArchive(t *testing.T, archive string, idx v1.ImageIndex) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendIndex(idx, layout.WithAnnotations(map[string]string{
		"io.containerd.image.name":          testRef,
		"org.opencontainers.image.ref.name": "1",
	})); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || path == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil || d.IsDir() {
			return err
		}
		src, err := os.Open(path)
		if err != nil {
			return err
		}
		defer src.Close()
		_, err = io.Copy(tw, src)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err != nil {
		t.Fatal(err)
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
