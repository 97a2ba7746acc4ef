package verify

import (
	"bytes"
	"fmt"
	"maps"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/images/rootfs"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/render"
	"kubeup.dev/kubeup/test/golden"
)

// bootedDefault stands a default cluster's machines up in directories as
// their images and cloud-init leave them (the render of examples/cluster.yaml,
// the role images' units and files, the directories their tmpfiles.d makes,
// and what components write at run time: the agent's CNI configuration, a
// node kubelet's kubeconfig after TLS bootstrapping), and reads each with
// the agent's own InspectMachine, as GET /v1/config does on a booted
// machine. Everything the images and cloud-init write is root's.
func bootedDefault(t *testing.T) (roles map[string]string, reports map[string]*agent.MachineConfig) {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 1)
	_, file, _, _ := runtime.Caller(0)
	c, err := config.Load(filepath.Join(filepath.Dir(file), "..", "..", "examples", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var seed [32]byte
	b, err := pki.Generate(render.PKICluster(c), pki.Options{
		Now:  func() time.Time { return time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC) },
		Rand: mathrand.NewChaCha8(seed),
	})
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(c, b, render.Options{Images: components.Images{Pause: "registry.kubeup.dev/pause:3.10"}})
	if err != nil {
		t.Fatal(err)
	}
	images, err := render.Roles()
	if err != nil {
		t.Fatal(err)
	}
	roles, reports = map[string]string{}, map[string]*agent.MachineConfig{}
	for _, m := range res.Machines {
		root := t.TempDir()
		role := components.Role(m.Role)
		write := func(f components.File) {
			p := filepath.Join(root, f.Path)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, f.Content, f.Mode); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, f.Mode); err != nil {
				t.Fatal(err)
			}
		}
		for _, f := range images[role].Files {
			write(f)
			if strings.HasPrefix(f.Path, "/usr/lib/tmpfiles.d/") {
				tmpfilesDirs(t, root, f.Content)
			}
		}
		for _, u := range images[role].Units {
			data, _ := u.Bytes()
			write(components.File{Path: components.UnitDir + "/" + u.Name, Mode: rootfs.UnitFileMode, Content: data})
		}
		for _, f := range m.Files {
			write(f)
		}
		write(components.File{Path: components.CNIConfDir + "/" + agent.CNIConfFile, Mode: agent.CNIConfigMode, Content: []byte("{}")})
		if role == components.Node {
			write(components.File{Path: components.KubeletKubeconfig, Mode: 0o600, Content: []byte("apiVersion: v1\n")})
		}
		ctx := components.Context{Cluster: res.Cluster, Machine: components.Machine{Name: m.Name, Role: role, IP: m.IP}}
		roles[m.Name], reports[m.Name] = string(role), inspectUnder(root, components.AgentConfigFor(ctx).Inspect)
	}
	return roles, reports
}

// tmpfilesDirs makes the directories of tmpfiles.d "d" lines under root.
func tmpfilesDirs(t *testing.T, root string, conf []byte) {
	for _, line := range strings.Split(string(conf), "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "d" {
			continue
		}
		mode, err := strconv.ParseUint(f[2], 8, 32)
		if err != nil {
			t.Fatalf("tmpfiles line %q: %v", line, err)
		}
		p := filepath.Join(root, f[1])
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, os.FileMode(mode))
	}
}

// inspectUnder runs InspectMachine with every path under root, and reports
// them as the machine's.
func inspectUnder(root string, in agentconfig.Inspect) *agent.MachineConfig {
	re := agentconfig.Inspect{EnvFiles: map[string]string{}}
	for u, p := range in.EnvFiles {
		re.EnvFiles[u] = root + p
	}
	for _, p := range in.ConfigFiles {
		re.ConfigFiles = append(re.ConfigFiles, root+p)
	}
	for _, p := range in.Paths {
		re.Paths = append(re.Paths, root+p)
	}
	mc := agent.InspectMachine(re)
	for i := range mc.Units {
		mc.Units[i].EnvFile = strings.TrimPrefix(mc.Units[i].EnvFile, root)
	}
	for i := range mc.Files {
		mc.Files[i].Path = strings.TrimPrefix(mc.Files[i].Path, root)
		mc.Files[i].UID, mc.Files[i].GID = 0, 0
	}
	return &mc
}

func report(results []CISResult) []byte {
	var b bytes.Buffer
	for _, r := range results {
		fmt.Fprintf(&b, "%-4s  %-6s %-10s %s\n      %s\n", r.Status, r.ID, r.Machine, r.Title, r.Evidence)
	}
	return b.Bytes()
}

// A default cluster passes every CIS item kubeup checks; the report, with
// its evidence, is a golden file, so a change to a flag or a file shows in
// it. The deliberate deviations are exactly the README's.
func TestCISDefaultClusterPasses(t *testing.T) {
	results := EvaluateCIS(bootedDefault(t))
	golden.Assert(t, "cis-default", report(results))
	skipped := map[string]bool{}
	machines := map[string]int{}
	for _, r := range results {
		machines[r.Machine]++
		switch r.Status {
		case CISFail:
			t.Errorf("%s %s on %s: %s", r.ID, r.Title, r.Machine, r.Evidence)
		case CISSkip:
			skipped[r.ID] = true
			if !strings.HasPrefix(r.Evidence, "deliberate: ") && !strings.HasPrefix(r.Evidence, "not read on the machine") {
				t.Errorf("%s is skipped without a reason: %q", r.ID, r.Evidence)
			}
		}
	}
	want := "1.1.12 1.1.20 1.2.11 1.2.28 1.2.9 1.3.7 1.4.2 4.1.7 4.2.7"
	if got := strings.Join(slices.Sorted(maps.Keys(skipped)), " "); got != want {
		t.Errorf("skipped %s, want %s (update the README's table with this list)", got, want)
	}
	if machines["master-0"] <= machines["node-0"] || machines["node-0"] < 20 {
		t.Errorf("items per machine: %v", machines)
	}
}

// A machine that breaks an item fails it, with what was seen.
func TestCISFailures(t *testing.T) {
	roles, reports := bootedDefault(t)
	master, node := reports["master-0"], reports["node-0"]
	for i, u := range master.Units {
		if u.Unit == "kube-apiserver.service" {
			master.Units[i].Flags["anonymous-auth"] = "true"
			master.Units[i].Flags["tls-cipher-suites"] += ",TLS_RSA_WITH_RC4_128_SHA"
			delete(master.Units[i].Flags, "audit-log-path")
		}
	}
	for i, f := range master.Files {
		if f.Path == components.PKIDir+"/ca.key" {
			master.Files[i].Mode = 0o644
		}
	}
	for i, f := range node.Files {
		if f.Path == components.KubeletConfigPath {
			s := *f.Content + "readOnlyPort: 10255\n"
			node.Files[i].Content = &s
		}
		if f.Path == components.KubeletKubeconfig {
			node.Files[i].UID = 1000
		}
	}
	want := map[string]string{
		"1.2.1 master-0":  "kube-apiserver --anonymous-auth=true",
		"1.2.29 master-0": "TLS_RSA_WITH_RC4_128_SHA",
		"1.2.16 master-0": "kube-apiserver: --audit-log-path not set",
		"1.1.21 master-0": "/etc/kubernetes/pki/ca.key 0644",
		"4.2.4 node-0":    "config.yaml: readOnlyPort=10255",
		"4.1.6 node-0":    "/etc/kubernetes/kubelet.conf 1000:0",
	}
	failed := map[string]string{}
	for _, r := range EvaluateCIS(roles, reports) {
		if r.Status == CISFail {
			failed[r.ID+" "+r.Machine] = r.Evidence
		}
	}
	for k, ev := range want {
		if !strings.Contains(failed[k], ev) {
			t.Errorf("%s: failed with %q, want evidence containing %q", k, failed[k], ev)
		}
	}
	if len(failed) != len(want) {
		t.Errorf("failed %v, want exactly %v", failed, want)
	}
}
