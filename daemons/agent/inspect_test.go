package agent

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/agentconfig"
)

// The flags of an env file as components renders it come back as they went.
func TestParseEnvFlags(t *testing.T) {
	t.Parallel()
	want := components.Flags{"anonymous-auth": "false", "tls-cipher-suites": "A,B", "profiling": "false", "config": "/etc/x.yaml"}
	data, err := components.EnvFileContent("kube-apiserver", "master-0", want, map[string]string{"KUBEUP_CPU_WEIGHT_FLAGS": "--after-boot"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ParseEnvFlags(data); !maps.Equal(got, map[string]string(want)) {
		t.Errorf("got %v, want %v", got, want)
	}
	if got := ParseEnvFlags([]byte("# c\nOTHER=--x=1\nKUBEUP_ARGS=--v --w=2\n")); !maps.Equal(got, map[string]string{"v": "true", "w": "2"}) {
		t.Errorf("got %v", got)
	}
}

func TestInspectMachine(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	write := func(rel, content string, mode os.FileMode) string {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, mode)
		return p
	}
	env := write("env/kubelet.env", "KUBEUP_ARGS=--config=/var/lib/kubelet/config.yaml \\\n  --node-ip=10.77.0.100\n", 0o600)
	conf := write("kubelet/config.yaml", "readOnlyPort: 0\n", 0o600)
	key := write("pki/etcd/peer.key", "secret", 0o600)
	write("pki/ca.crt", "cert", 0o644)
	in := agentconfig.Inspect{
		EnvFiles:    map[string]string{"kubelet.service": env, "kube-proxy.service": filepath.Join(root, "env/missing.env")},
		ConfigFiles: []string{conf},
		Paths:       []string{filepath.Join(root, "pki"), filepath.Join(root, "gone")},
	}
	mc := InspectMachine(in)
	if len(mc.Units) != 2 || mc.Units[0].Unit != "kube-proxy.service" || mc.Units[0].Error == "" ||
		mc.Units[1].Flags["node-ip"] != "10.77.0.100" || mc.Units[1].Flags["config"] != "/var/lib/kubelet/config.yaml" {
		t.Errorf("units %+v", mc.Units)
	}
	files := map[string]FileInfo{}
	for _, f := range mc.Files {
		files[f.Path] = f
	}
	if f := files[conf]; f.Content == nil || *f.Content != "readOnlyPort: 0\n" || f.Mode != 0o600 {
		t.Errorf("config file %+v", f)
	}
	if f := files[key]; f.Content != nil || f.Mode != 0o600 || f.UID != uint32(os.Getuid()) {
		t.Errorf("key %+v: a key's content must never be reported", f)
	}
	if f := files[filepath.Join(root, "pki/etcd")]; !f.Dir {
		t.Errorf("directory %+v", f)
	}
	if f := files[filepath.Join(root, "gone")]; f.Error != "not found" {
		t.Errorf("missing path %+v", f)
	}
	data, _ := json.Marshal(mc)
	if strings.Contains(string(data), "secret") {
		t.Errorf("the report carries a key's content: %s", data)
	}
}
