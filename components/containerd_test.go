package components

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	"github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/pelletier/go-toml/v2"
)

// The image's hosts.toml, read by containerd's own loader from the
// directory the CRI plugin is configured with, puts the agent's mirror
// (plain HTTP, pull and resolve only) before every registry, and keeps the
// registry itself as the fallback.
func TestContainerdHostsMirrorFirst(t *testing.T) {
	root := t.TempDir()
	var hosts []byte
	for _, r := range Roles() {
		files, err := RoleImageFiles(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasPrefix(f.Path, ContainerdHostsDir+"/") {
				p := filepath.Join(root, strings.TrimPrefix(f.Path, ContainerdHostsDir+"/"))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(p, f.Content, 0o644); err != nil {
					t.Fatal(err)
				}
				hosts = f.Content
			}
		}
		if hosts == nil {
			t.Fatalf("%s image: no file under %s", r, ContainerdHostsDir)
		}
	}

	// The CRI plugin reads the directory the config names.
	for _, ctx := range testContexts() {
		files, err := Containerd{}.Files(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			Plugins map[string]struct {
				Registry struct {
					ConfigPath string `toml:"config_path"`
				} `toml:"registry"`
			} `toml:"plugins"`
		}
		if err := toml.Unmarshal(files[0].Content, &cfg); err != nil {
			t.Fatal(err)
		}
		if got := cfg.Plugins["io.containerd.cri.v1.images"].Registry.ConfigPath; got != ContainerdHostsDir {
			t.Errorf("%s: registry config_path %q, want %q", ctx.Machine.Name, got, ContainerdHostsDir)
		}
		// The agent serves the address the hosts file names.
		if got := AgentConfigFor(ctx).RegistryMirror; got != AgentRegistryMirrorAddr || !strings.Contains(string(hosts), "http://"+got) {
			t.Errorf("%s: agent registryMirror %q, hosts.toml:\n%s", ctx.Machine.Name, got, hosts)
		}
	}

	configure := config.ConfigureHosts(context.Background(), config.HostOptions{HostDir: config.HostDirFromRoot(root)})
	for _, tc := range []struct{ registry, upstream string }{
		{"registry.k8s.io", "registry.k8s.io"},
		{"docker.io", "registry-1.docker.io"},
		{"registry.kubeup.dev", "registry.kubeup.dev"},
	} {
		got, err := configure(tc.registry)
		if err != nil {
			t.Fatalf("%s: %v", tc.registry, err)
		}
		if len(got) != 2 {
			t.Fatalf("%s: %d hosts, want the mirror and the registry: %+v", tc.registry, len(got), got)
		}
		m, up := got[0], got[1]
		if m.Host != AgentRegistryMirrorAddr || m.Scheme != "http" || m.Capabilities != docker.HostCapabilityPull|docker.HostCapabilityResolve {
			t.Errorf("%s: first host %s://%s capabilities %b, want http://%s pull+resolve", tc.registry, m.Scheme, m.Host, m.Capabilities, AgentRegistryMirrorAddr)
		}
		if up.Host != tc.upstream || up.Scheme != "https" {
			t.Errorf("%s: fallback %s://%s, want https://%s", tc.registry, up.Scheme, up.Host, tc.upstream)
		}
	}
}
