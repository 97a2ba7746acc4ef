package render

import (
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"

	"kubeup.dev/kubeup/cloudinit"
	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/test/golden"
)

func repoFile(t *testing.T, rel string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", rel)
}

func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return mathrand.NewChaCha8(s)
}

// renderExample renders examples/cluster.yaml with a reproducible PKI.
func renderExample(t *testing.T, edit func(*config.Cluster)) *Result {
	t.Helper()
	return renderExampleWith(t, edit, Options{})
}

// renderExampleWith is renderExample with options besides the images.
func renderExampleWith(t *testing.T, edit func(*config.Cluster), o Options) *Result {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 1)
	c, err := config.Load(repoFile(t, "examples/cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		edit(c)
		if errs := config.Validate(c); len(errs) > 0 {
			t.Fatal(errs)
		}
	}
	b, err := pki.Generate(PKICluster(c), pki.Options{
		Now:  func() time.Time { return time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC) },
		Rand: seeded(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	o.Images = components.Images{Pause: "registry.kubeup.dev/pause:3.10", CoreDNS: "registry.kubeup.dev/coredns:v1.15.0", Testbox: "registry.kubeup.dev/testbox:1"}
	r, err := Render(c, b, o)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestUserDataGolden(t *testing.T) {
	r := renderExample(t, nil)
	for _, m := range r.Machines {
		golden.Assert(t, m.Name+"/user-data", m.UserData)
		golden.Assert(t, m.Name+"/meta-data", m.MetaData)
		golden.Assert(t, m.Name+"/network-config", m.NetworkConfig)
	}
}

// Every user-data passes the real cloud-init's schema validation.
func TestUserDataPassesCloudInitSchema(t *testing.T) {
	if _, err := exec.LookPath("cloud-init"); err != nil {
		t.Skip("cloud-init not installed (make deps installs it)")
	}
	r := renderExample(t, func(c *config.Cluster) {
		three := 3
		c.Spec.Masters.Count = &three
		c.Spec.SSH.AuthorizedKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0 test@kubeup"}
	})
	dir := t.TempDir()
	for _, m := range r.Machines {
		p := filepath.Join(dir, m.Name)
		if err := os.WriteFile(p, m.CloudConfig, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("cloud-init", "schema", "--config-file", p).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
			t.Errorf("%s: cloud-init schema: %v\n%s", m.Name, err, out)
		}
	}
}

// A machine under an emulator turns address-space randomisation off at
// every boot (TCG translates every new process again otherwise); nothing
// else does, and the config still passes cloud-init's schema.
func TestEmulatedMachinesWithoutRandomLayout(t *testing.T) {
	r := renderExample(t, nil)
	emu := renderExampleWith(t, nil, Options{Emulated: true})
	const cmd = "- [sysctl, -q, -w, kernel.randomize_va_space=0]"
	_, schema := exec.LookPath("cloud-init")
	for i, m := range emu.Machines {
		if !strings.Contains(string(m.CloudConfig), "bootcmd:\n"+cmd+"\n") && !strings.Contains(string(m.CloudConfig), "bootcmd:\n  "+cmd+"\n") {
			t.Errorf("%s (emulated): no %q in bootcmd:\n%s", m.Name, cmd, m.CloudConfig)
		}
		if strings.Contains(string(r.Machines[i].CloudConfig), "randomize_va_space") {
			t.Errorf("%s (not emulated): address-space randomisation turned off", m.Name)
		}
		if schema != nil {
			continue
		}
		p := filepath.Join(t.TempDir(), m.Name)
		if err := os.WriteFile(p, m.CloudConfig, 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cloud-init", "schema", "--config-file", p).CombinedOutput(); err != nil || !strings.Contains(string(out), "Valid cloud-config") {
			t.Errorf("%s: cloud-init schema: %v\n%s", m.Name, err, out)
		}
	}
}

// sshd is started only on machines someone may log in to.
func TestSSHOnlyWithKeys(t *testing.T) {
	for _, m := range renderExample(t, nil).Machines {
		if strings.Contains(string(m.CloudConfig), SSHService) {
			t.Errorf("%s: no keys, but the user-data starts sshd:\n%s", m.Name, m.CloudConfig)
		}
	}
	r := renderExample(t, func(c *config.Cluster) {
		c.Spec.SSH.AuthorizedKeys = []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0 test@kubeup"}
	})
	for _, m := range r.Machines {
		if !strings.Contains(string(m.CloudConfig), SSHService) {
			t.Errorf("%s: keys given, but the user-data does not start sshd:\n%s", m.Name, m.CloudConfig)
		}
	}
}

// What cloud-init writes is exactly the component files plus the machine's
// certificates and keys, with keys and kubeconfigs 0600.
func TestMachineFiles(t *testing.T) {
	r := renderExample(t, nil)
	want := map[string]map[string]os.FileMode{
		"master-0": {
			"/etc/kubernetes/pki/ca.key": 0o600, "/etc/kubernetes/pki/sa.key": 0o600,
			"/etc/kubernetes/pki/apiserver.crt": 0o644, "/etc/kubernetes/pki/etcd/peer.key": 0o600,
			"/etc/kubernetes/encryption-config.yaml": 0o600, "/etc/kubeup/env/etcd.env": 0o600,
			"/etc/kubernetes/kubelet.conf": 0o600,
		},
		"node-0": {
			"/etc/kubernetes/pki/ca.crt": 0o644, "/etc/kubernetes/bootstrap-kubelet.conf": 0o600,
			"/etc/kubernetes/pki/kube-proxy-client.key": 0o600, "/etc/kubeup/env/kubelet.env": 0o600,
			"/var/lib/kubelet/config.yaml": 0o600,
		},
	}
	forbidden := map[string][]string{
		"node-0": {"/etc/kubernetes/pki/ca.key", "/etc/kubernetes/pki/sa.key", "/etc/kubernetes/pki/etcd/ca.crt", "/etc/kubernetes/kubelet.conf"},
	}
	for _, m := range r.Machines {
		got := map[string]os.FileMode{}
		for _, f := range m.Files {
			got[f.Path] = f.Mode
			if strings.HasSuffix(f.Path, ".key") && f.Mode != 0o600 {
				t.Errorf("%s: %s mode %o", m.Name, f.Path, f.Mode)
			}
		}
		for p, mode := range want[m.Name] {
			if g, ok := got[p]; !ok || g != mode {
				t.Errorf("%s: %s mode %o present %v, want %o", m.Name, p, g, ok, mode)
			}
		}
		for _, p := range forbidden[m.Name] {
			if _, ok := got[p]; ok {
				t.Errorf("%s must not carry %s", m.Name, p)
			}
		}
	}
}

// Every certificate a component says it reads is a row of the PKI table.
func TestComponentCertificatesAreInTheTable(t *testing.T) {
	r := renderExample(t, nil)
	names := map[string]bool{}
	for _, s := range r.PKI.Specs {
		names[s.Name] = true
	}
	for _, role := range components.Roles() {
		for _, c := range components.ForRole(role) {
			for _, n := range c.Certificates(role) {
				if !names[n] {
					t.Errorf("%s on %s reads %q, which the PKI table does not have", c.Name(), role, n)
				}
			}
		}
	}
}

// The node credentials the addon manager approves renewals of are exactly
// the leaves of the PKI table that go to nodes, with their subject, names
// and usages.
func TestNodeCredentialsAreTheTablesNodeLeaves(t *testing.T) {
	r := renderExample(t, nil)
	creds := components.NodeCredentials()
	rows := 0
	for _, s := range r.PKI.Specs {
		if s.Kind != pki.KindCert || !slices.Contains(s.Where, pki.PlaceNode) {
			continue
		}
		rows++
		i := slices.IndexFunc(creds, func(c components.NodeCredential) bool { return c.CertFile == s.CertFile })
		if i < 0 {
			t.Errorf("%s (%s) goes to nodes but is no components.NodeCredential", s.ID(), s.CertFile)
			continue
		}
		c := creds[i]
		var ips []string
		for _, ip := range s.IPAddresses {
			ips = append(ips, ip.String())
		}
		usages := []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature}
		for _, u := range s.Usages {
			usages = append(usages, map[x509.ExtKeyUsage]certificatesv1.KeyUsage{
				x509.ExtKeyUsageServerAuth: certificatesv1.UsageServerAuth, x509.ExtKeyUsageClientAuth: certificatesv1.UsageClientAuth}[u])
		}
		if c.KeyFile != s.KeyFile || c.CommonName != s.CommonName || !slices.Equal(c.Organization, s.Organization) ||
			!slices.Equal(c.DNSNames, s.DNSNames) || !slices.Equal(c.IPAddresses, ips) || !slices.Equal(c.Usages, usages) {
			t.Errorf("node credential %+v\ndiffers from the table's %s: %s %s O=%q %q %q %v", c, s.ID(), s.KeyFile, s.CommonName, s.Organization, s.DNSNames, ips, usages)
		}
	}
	if rows != len(creds) {
		t.Errorf("%d node leaves in the table, %d node credentials", rows, len(creds))
	}
}

func TestWriteDirAndSeed(t *testing.T) {
	r := renderExample(t, nil)
	dir := filepath.Join(t.TempDir(), "out")
	if err := r.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	// A second write replaces the render in place.
	if err := r.WriteDir(dir); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"cluster.yaml", "certificates.txt", "admin.kubeconfig",
		"machines/master-0/seed.iso", "machines/node-0/user-data",
		"roles/master/units/kube-apiserver.service", "roles/master/units/kubeup-master.target",
		"roles/node/units/kubelet.service", "roles/node/files/etc/sysctl.d/90-kubeup.conf"} {
		if _, err := os.Stat(filepath.Join(dir, rel)); err != nil {
			t.Error(err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, "admin.kubeconfig")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.kubeconfig: %v %v", fi.Mode(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			t.Errorf("temporary %s left behind", e.Name())
		}
	}
	if _, err := exec.LookPath("isoinfo"); err != nil {
		t.Skip("isoinfo not installed (make deps installs genisoimage)")
	}
	for _, m := range r.Machines {
		iso := filepath.Join(dir, "machines", m.Name, "seed.iso")
		info, err := exec.Command("isoinfo", "-d", "-i", iso).CombinedOutput()
		if err != nil || !strings.Contains(string(info), "Volume id: cidata") {
			t.Errorf("%s: isoinfo -d: %v\n%s", iso, err, info)
		}
		for name, want := range map[string][]byte{"user-data": m.UserData, "meta-data": m.MetaData, "network-config": m.NetworkConfig} {
			got, err := exec.Command("isoinfo", "-R", "-i", iso, "-x", "/"+name).Output()
			if err != nil {
				t.Fatalf("isoinfo -x /%s: %v", name, err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s: /%s in the seed differs from the rendered file", m.Name, name)
			}
			onDisk, _ := os.ReadFile(filepath.Join(dir, "machines", m.Name, name))
			if !bytes.Equal(onDisk, want) {
				t.Errorf("%s: machines/%s/%s differs from the seed", m.Name, m.Name, name)
			}
		}
	}
}

// On AWS user-data is gzipped when large, and a config that still does not
// fit fails with the limit and the size.
func TestUserDataSizeLimit(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	c := config.Default("big")
	b, err := pki.Generate(PKICluster(c), pki.Options{Rand: seeded(2)})
	if err != nil {
		t.Fatal(err)
	}
	r, err := Render(c, b, Options{Policy: cloudinit.PolicyAWS()})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Machines {
		if len(m.UserData) > 16384 {
			t.Errorf("%s user-data is %d bytes", m.Name, len(m.UserData))
		}
		t.Logf("%s: cloud-config %d bytes, user-data %d bytes", m.Name, len(m.CloudConfig), len(m.UserData))
	}
	src := seeded(3)
	for i := range 400 {
		key := make([]byte, 32)
		_, _ = src.Read(key)
		c.Spec.SSH.AuthorizedKeys = append(c.Spec.SSH.AuthorizedKeys, fmt.Sprintf("ssh-ed25519 AAAA%x key%d", key, i))
	}
	_, err = Render(c, b, Options{Policy: cloudinit.PolicyAWS()})
	if !errors.Is(err, cloudinit.ErrTooLarge) || !strings.Contains(err.Error(), "16384") {
		t.Fatalf("err = %v, want ErrTooLarge naming the 16384-byte limit", err)
	}
	t.Log(err)
}

func TestMACs(t *testing.T) {
	r := renderExample(t, nil)
	m := r.Machines[0]
	if m.ClusterMAC != "52:54:00:4d:00:0a" || m.ManagementMAC != "52:54:01:4d:00:0a" {
		t.Errorf("MACs %s %s", m.ClusterMAC, m.ManagementMAC)
	}
}

// Every /metrics/<name> path Prometheus scrapes on an agent is one the
// agent serves on that machine's role.
func TestPrometheusAgentPathsAreServed(t *testing.T) {
	r := renderExample(t, nil)
	cfg, err := addons.PrometheusConfig(r.Cluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range r.Machines {
		ac := components.AgentConfigFor(components.Context{Cluster: r.Cluster,
			Machine: components.Machine{Name: m.Name, Role: components.Role(m.Role), IP: m.IP}})
		for _, line := range strings.Split(cfg, "\n") {
			path, ok := strings.CutPrefix(strings.TrimSpace(line), "metrics_path: /metrics/")
			if !ok || path == "cadvisor" {
				continue
			}
			masterOnly := path == "etcd"
			if masterOnly && m.Role != config.RoleMaster {
				continue
			}
			if _, ok := ac.Scrape[path]; !ok {
				t.Errorf("Prometheus scrapes /metrics/%s on %s's agent, which does not serve it", path, m.Name)
			}
		}
	}
}

// The metal example's machines: network-config by each machine's own MAC,
// static or DHCP, and the API endpoint the nodes use.
func TestMetalGolden(t *testing.T) {
	cryptotest.SetGlobalRandom(t, 1)
	c, err := config.Load(repoFile(t, "examples/metal.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.Generate(PKICluster(c), pki.Options{
		Now:  func() time.Time { return time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC) },
		Rand: seeded(1),
	})
	if err != nil {
		t.Fatal(err)
	}
	now := func() time.Time { return time.Date(2026, 11, 1, 10, 0, 0, 0, time.UTC) }
	r, err := Render(c, b, Options{Now: now, Images: components.Images{Pause: "registry.kubeup.dev/pause:3.10", CoreDNS: "registry.kubeup.dev/coredns:v1.15.0", Testbox: "registry.kubeup.dev/testbox:1"}})
	if err != nil {
		t.Fatal(err)
	}
	// The nodes' bootstrap token is accepted for the TTL (2h) only.
	boot := false
	for _, f := range r.Machines[0].Files {
		if strings.HasSuffix(f.Path, "/bootstrap.yaml") {
			boot = strings.Contains(string(f.Content), `expiration: "2026-11-01T12:00:00Z"`)
		}
	}
	if !boot {
		t.Error("the master's bootstrap token has no expiration two hours after the render")
	}
	for _, m := range r.Machines {
		golden.Assert(t, "metal/"+m.Name+"/network-config", m.NetworkConfig)
		if m.ClusterMAC != m.MAC || m.ManagementMAC != "" {
			t.Errorf("%s: cluster MAC %q, management MAC %q: want its own MAC and none", m.Name, m.ClusterMAC, m.ManagementMAC)
		}
	}
	if got := r.Cluster.APIServerEndpoint; got != "https://192.168.10.10:6443" {
		t.Errorf("API server endpoint %s", got)
	}
	// A node's seed (served over an unauthenticated network boot) holds
	// no private key but the bootstrap token's: its agent asks for its
	// certificates with the token. A master's seed is whole.
	for _, m := range r.Machines {
		var keys []string
		agentYAML := ""
		for _, f := range m.Files {
			if strings.Contains(string(f.Content), "PRIVATE KEY") {
				keys = append(keys, f.Path)
			}
			if f.Path == components.AgentConfigPath {
				agentYAML = string(f.Content)
			}
		}
		if m.Role == config.RoleMaster {
			if len(keys) == 0 {
				t.Errorf("%s: a master's seed without its keys", m.Name)
			}
			continue
		}
		if len(keys) > 0 {
			t.Errorf("%s: private keys in a node's seed: %v", m.Name, keys)
		}
		for _, want := range []string{"join:\n    bootstrapKubeconfig: /etc/kubernetes/bootstrap-kubelet.conf", "template:\n      clientAuth: true\n      commonName: system:kube-proxy"} {
			if !strings.Contains(agentYAML, want) {
				t.Errorf("%s: agent config lacks %q:\n%s", m.Name, want, agentYAML)
			}
		}
	}
}
