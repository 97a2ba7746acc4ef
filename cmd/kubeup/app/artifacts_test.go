package app

import (
	"bytes"
	"strings"
	"testing"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/images/artifacts"
)

func TestArtifactsBadSource(t *testing.T) {
	code, _, stderr := run(t, "artifacts", "--source", "nightly", "--cache-dir", t.TempDir())
	if code != 2 || !strings.Contains(stderr, `unknown source "nightly"`) {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestArtifactsReleaseRefusesUnpinned(t *testing.T) {
	code, _, stderr := run(t, "artifacts", "--source", "release", "--only", "etcd", "--cache-dir", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "no pinned sha256 for etcd; use --source build") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestArtifactsUnknownName(t *testing.T) {
	code, _, stderr := run(t, "artifacts", "--only", "etcd,grafana", "--cache-dir", t.TempDir())
	if code != 1 || !strings.Contains(stderr, "unknown artifact grafana") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestPrintArtifacts(t *testing.T) {
	set := &artifacts.Set{Artifacts: []*artifacts.Artifact{
		{Dir: "/c/artifacts/etcd/k1", Manifest: artifacts.Manifest{
			Kind: artifacts.KindComponent, Name: "etcd", Version: "v3.6.16", Source: artifacts.SourceBuild,
			Main: "usr/local/bin/etcd",
			Files: []artifacts.File{
				{Path: "usr/local/bin/etcd", Size: 3 << 20, SHA256: strings.Repeat("a", 64)},
				{Path: "usr/local/bin/etcdctl", Link: "etcd"},
			}}},
		{Dir: "/c/artifacts/cni-plugins/k2", Cached: true, Manifest: artifacts.Manifest{
			Kind: artifacts.KindComponent, Name: "cni-plugins", Version: "v1.10.0", Source: artifacts.SourceBuild,
			Main: "opt/cni/bin/bridge",
			Files: []artifacts.File{
				{Path: "opt/cni/bin/bridge", Size: 1 << 20, SHA256: strings.Repeat("b", 64)},
				{Path: "opt/cni/bin/loopback", Size: 1 << 20, SHA256: strings.Repeat("c", 64)},
			}}},
		{Dir: "/c/images/pause/k3", Manifest: artifacts.Manifest{
			Kind: artifacts.KindImage, Name: "pause", Version: "3.10", Source: artifacts.SourceBuild,
			Main:  "var/lib/kubeup/images/pause.tar",
			Files: []artifacts.File{{Path: "var/lib/kubeup/images/pause.tar", Size: 1 << 19, SHA256: strings.Repeat("d", 64)}},
			Image: &artifacts.ImageInfo{Ref: "registry.kubeup.dev/pause:3.10", Tarball: "var/lib/kubeup/images/pause.tar"}}},
	}}
	var out bytes.Buffer
	if err := printArtifacts(&cli.Env{Stdout: &out}, set); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	lines := strings.Split(got, "\n")
	for i, want := range []string{
		"NAME KIND VERSION SOURCE FILE SHA256 SIZE TOTAL CACHED",
		"etcd component v3.6.16 build usr/local/bin/etcd " + strings.Repeat("a", 64) + " 3.0 MiB no",
		"cni-plugins component v1.10.0 build opt/cni/bin/bridge " + strings.Repeat("b", 64) + " 1.0 MiB 2.0 MiB (2 files) yes",
		"pause image 3.10 build registry.kubeup.dev/pause:3.10 " + strings.Repeat("d", 64) + " 0.5 MiB no",
		"cache: /c",
	} {
		if i >= len(lines) || strings.Join(strings.Fields(lines[i]), " ") != want {
			t.Errorf("line %d: want %q in\n%s", i, want, got)
		}
	}
}
