package artifacts

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"kubeup.dev/kubeup/images"
	"kubeup.dev/kubeup/test/kubetest"
)

// testWriter sends progress lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// TestIntegrationArtifacts checks the real artifacts: every binary reports
// the pinned version, every image tarball loads with the right config. It
// uses the artifacts already in the cache ($KUBEUP_CACHE_DIR or the user
// cache, with $SOURCE_DATE_EPOCH as `kubeup artifacts` uses them) and builds
// the missing ones only with KUBEUP_ARTIFACTS_TEST=1 (a cold build takes
// about 15 minutes on 2 cores).
func TestIntegrationArtifacts(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: checks the real built artifacts; skipped under -short")
	}
	epoch, err := SourceDateEpochFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	source := SourceBuild
	if os.Getenv("KUBEUP_ARTIFACTS_SOURCE") == string(SourceRelease) {
		source = SourceRelease
	}
	set, err := Ensure(ctx, Options{
		Source: source, SourceDateEpoch: epoch, Progress: testWriter{t},
		CacheOnly: os.Getenv("KUBEUP_ARTIFACTS_TEST") != "1",
	})
	if errors.Is(err, ErrNotCached) {
		t.Skipf("integration: %v; run `kubeup artifacts` first or set KUBEUP_ARTIFACTS_TEST=1 to build them here", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	v := images.Pinned()
	ver := func(n string) string { c, _ := v.Component(n); return c.Version }
	bare := func(n string) string { return strings.TrimPrefix(ver(n), "v") }

	for _, tc := range []struct {
		component, file string
		args            []string
		want            string
	}{
		{"kubernetes", "usr/local/bin/kube-apiserver", []string{"--version"}, "Kubernetes " + ver("kubernetes")},
		{"kubernetes", "usr/local/bin/kube-controller-manager", []string{"--version"}, "Kubernetes " + ver("kubernetes")},
		{"kubernetes", "usr/local/bin/kube-scheduler", []string{"--version"}, "Kubernetes " + ver("kubernetes")},
		{"kubernetes", "usr/local/bin/kubelet", []string{"--version"}, "Kubernetes " + ver("kubernetes")},
		{"kubernetes", "usr/local/bin/kube-proxy", []string{"--version"}, "Kubernetes " + ver("kubernetes")},
		{"kubernetes", "usr/local/bin/kubectl", []string{"version", "--client"}, "Client Version: " + ver("kubernetes")},
		{"etcd", "usr/local/bin/etcd", []string{"--version"}, "etcd Version: " + bare("etcd")},
		{"etcd", "usr/local/bin/etcdctl", []string{"version"}, "etcdctl version: " + bare("etcd")},
		{"etcd", "usr/local/bin/etcdutl", []string{"version"}, "etcdutl version: " + bare("etcd")},
		{"containerd", "usr/local/bin/containerd", []string{"--version"}, "containerd github.com/containerd/containerd/v2 " + ver("containerd")},
		{"containerd", "usr/local/bin/ctr", []string{"--version"}, "ctr github.com/containerd/containerd/v2 " + ver("containerd")},
		{"containerd", "usr/local/bin/containerd-shim-runc-v2", []string{"-v"}, "Version:  " + ver("containerd")},
		{"runc", "usr/local/sbin/runc", []string{"--version"}, "runc version " + bare("runc")},
		{"cni-plugins", "opt/cni/bin/bridge", []string{"--version"}, "CNI bridge plugin " + ver("cni-plugins")},
		{"cni-plugins", "opt/cni/bin/host-local", []string{"--version"}, "CNI host-local plugin " + ver("cni-plugins")},
		{"cni-plugins", "opt/cni/bin/loopback", []string{"--version"}, "CNI loopback plugin " + ver("cni-plugins")},
		{"cni-plugins", "opt/cni/bin/portmap", []string{"--version"}, "CNI portmap plugin " + ver("cni-plugins")},
		{"coredns", "coredns", []string{"-version"}, "CoreDNS-" + bare("coredns")},
		{"pause", "pause", []string{"-v"}, "pause " + ver("pause")},
		{"pulumi", "usr/local/bin/pulumi", []string{"version"}, ver("pulumi")},
		{"prometheus", "bin/prometheus", []string{"--version"}, "prometheus, version " + PrometheusVersion(ver("prometheus"))},
		{"victoria-logs", "victoria-logs", []string{"--version"}, "-tags-" + ver("victoria-logs")},
		{"otelcol", "otelcol", []string{"--version"}, "otelcol version " + ver("otelcol")},
	} {
		t.Run(tc.component+"/"+tc.file[strings.LastIndex(tc.file, "/")+1:], func(t *testing.T) {
			a := set.Component(tc.component)
			if a == nil {
				t.Fatalf("no %s artifact", tc.component)
			}
			out := runArtifact(t, a.Path(tc.file), tc.args...)
			if !strings.Contains(out, tc.want) {
				t.Errorf("%s %s printed %q, want %q", tc.file, strings.Join(tc.args, " "), out, tc.want)
			}
		})
	}

	t.Run("busybox applets", func(t *testing.T) {
		a := set.Component("busybox")
		list := strings.Fields(runArtifact(t, a.Path("bin/busybox"), "--list"))
		for _, applet := range append(busyboxApplets, busyboxAllApplets...) {
			if !slices.Contains(list, applet) {
				t.Errorf("busybox has no applet %s", applet)
			}
		}
	})

	t.Run("pause exits 0 on SIGTERM", func(t *testing.T) {
		cmd := exec.Command(set.Component("pause").Path("pause"))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("pause exited with %v", err)
			}
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			t.Error("pause ignored SIGTERM")
		}
	})

	t.Run("prometheus serves its web UI", func(t *testing.T) {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "prometheus.yml")
		os.WriteFile(cfg, []byte("global: {scrape_interval: 1m}\n"), 0o644)
		addr := "127.0.0.1:" + strconv.Itoa(kubetest.FreePort(t))
		d := startDaemon(t, dir, "prometheus", set.Component("prometheus").Path("bin/prometheus"),
			"--config.file="+cfg, "--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr)
		waitHTTP(t, d, "http://"+addr+"/-/ready")
		for _, path := range []string{"/query", "/targets"} {
			body := httpGet(t, "http://"+addr+path)
			if !strings.Contains(body, `<div id="root">`) || !strings.Contains(body, "/assets/") {
				t.Errorf("%s is not the UI's index.html:\n%s", path, body)
			}
		}
	})

	for _, im := range v.Images {
		if im.OnDemand() {
			continue // TestIntegrationConformanceImages
		}
		t.Run("image/"+im.Name, func(t *testing.T) {
			a := set.Image(im.Name)
			if a == nil || a.Image == nil {
				t.Fatalf("no image artifact %s", im.Name)
			}
			if a.Image.Ref != im.Ref() {
				t.Errorf("ref %s, want %s", a.Image.Ref, im.Ref())
			}
			tag, err := name.NewTag(im.Ref())
			if err != nil {
				t.Fatal(err)
			}
			img, err := tarball.ImageFromPath(a.TarballPath(), &tag)
			if err != nil {
				t.Fatalf("load %s: %v", a.TarballPath(), err)
			}
			cf, err := img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			r, _ := imageRecipeFor(im.Name)
			if cf.OS != "linux" || cf.Architecture != "amd64" {
				t.Errorf("platform %s/%s", cf.OS, cf.Architecture)
			}
			if !slices.Equal(cf.Config.Entrypoint, r.Entrypoint) || !slices.Equal(cf.Config.Cmd, r.Cmd) {
				t.Errorf("entrypoint %q cmd %q, want %q %q", cf.Config.Entrypoint, cf.Config.Cmd, r.Entrypoint, r.Cmd)
			}
			if cf.Config.User != r.User {
				t.Errorf("user %q, want %q", cf.Config.User, r.User)
			}
			if fi, err := os.Stat(a.TarballPath()); err == nil {
				t.Logf("%s: %s", im.Ref(), humanSize(fi.Size()))
			}
			if d, _ := img.Digest(); d.String() != a.Image.Digest {
				t.Errorf("digest %s, manifest says %s", d, a.Image.Digest)
			}
		})
	}
}

// runArtifact runs a binary with a scratch HOME and returns its combined output.
func runArtifact(t *testing.T, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "PULUMI_SKIP_UPDATE_CHECK=true", "KUBECONFIG=/nonexistent")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s %s: %v\n%s", path, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func httpGet(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", u, resp.Status, err)
	}
	return string(b)
}
