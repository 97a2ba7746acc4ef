package cloudinit

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"kubeup.dev/kubeup/test/golden"
)

func exampleMetaData() MetaData {
	return MetaData{InstanceID: "iid-master-0-3f2a", LocalHostname: "master-0"}
}

func TestMetaDataGolden(t *testing.T) {
	out, err := exampleMetaData().Render()
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "meta-data", out)
}

func TestMetaDataValidation(t *testing.T) {
	_, err := MetaData{LocalHostname: "a b"}.Render()
	if err == nil || !strings.Contains(err.Error(), "instance-id") || !strings.Contains(err.Error(), "local-hostname") {
		t.Fatalf("got %v, want errors for instance-id and local-hostname", err)
	}
}

func exampleNetworkConfig() *NetworkConfig {
	return &NetworkConfig{Ethernets: map[string]Ethernet{
		// Map order must not matter: "wan" is listed first on purpose.
		"wan": {
			Match:          &Match{MACAddress: "52:54:00:ab:cd:ef"},
			SetName:        "wan0",
			DHCP4:          true,
			DHCP4Overrides: &DHCPOverrides{UseRoutes: new(false), UseDNS: new(false), RouteMetric: 200},
		},
		"lan": {
			Match:     &Match{MACAddress: "52:54:00:12:34:56"},
			SetName:   "lan0",
			Addresses: []string{"10.0.0.5/24", "fd00::5/64"},
			Routes: []Route{
				{To: "default", Via: "10.0.0.1", Metric: 100},
				{To: "fd00:10::/64", Via: "fd00::1"},
				{To: "10.96.0.0/12", Via: "10.0.0.2"},
			},
			Nameservers: &Nameservers{Addresses: []string{"10.0.0.1"}, Search: []string{"cluster.internal"}},
		},
	}}
}

func TestNetworkConfigGolden(t *testing.T) {
	out, err := exampleNetworkConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "network-config", out)
	for range 5 {
		again, err := exampleNetworkConfig().Render()
		if err != nil {
			t.Fatal(err)
		}
		if string(again) != string(out) {
			t.Fatal("two renders of the same NetworkConfig differ")
		}
	}
}

func TestNetworkConfigValidation(t *testing.T) {
	n := &NetworkConfig{Ethernets: map[string]Ethernet{
		"a": {Match: &Match{MACAddress: "nope"}, Addresses: []string{"10.0.0.5"}},
		"b": {SetName: "b0", DHCP4Overrides: &DHCPOverrides{}},
		"c": {Routes: []Route{{To: "default", Via: "gateway"}, {To: "10.0.0.0/8", Via: "fd00::1"}, {To: "default", Via: "fd00::1"}}},
		"d": {Nameservers: &Nameservers{Addresses: []string{"dns.example"}}},
	}}
	_, err := n.Render()
	if err == nil {
		t.Fatal("Render accepted an invalid network config")
	}
	for _, want := range []string{
		"ethernets.a.match.macaddress:", "ethernets.a.addresses[0]:", "ethernets.b.set-name:",
		"ethernets.b.dhcp4-overrides:", "ethernets.c.routes[0].via:", "ethernets.c.routes[1]:", "ethernets.c.routes[2].to: IPv6 default",
		"ethernets.d.nameservers.addresses[0]:",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

// TestNetworkConfigCloudInit feeds the rendered network-config through cloud-init's own network-state parser and
// networkd renderer. cloud-init 22.4 has no schema for network-config (`cloud-init schema` only knows
// cloud-config), so `cloud-init devel net-convert` is the closest real check: it rejects what its v2 parser cannot
// read (for example `to: default`), though it silently ignores unknown keys, so the output is checked too.
func TestNetworkConfigCloudInit(t *testing.T) {
	ci := needTool(t, "cloud-init", "cloud-init")
	out, err := exampleNetworkConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	in := filepath.Join(dir, "network-config")
	if err := os.WriteFile(in, out, 0o600); err != nil {
		t.Fatal(err)
	}
	outDir := filepath.Join(dir, "out")
	cmd := exec.Command(ci, "devel", "net-convert", "-p", in, "-k", "yaml", "-d", outDir, "-D", "debian", "-O", "networkd")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cloud-init devel net-convert: %v\n%s", err, b)
	}
	units := filepath.Join(outDir, "etc", "systemd", "network")
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(units, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	lan := read("10-cloud-init-lan0.network")
	for _, want := range []string{
		"MACAddress=52:54:00:12:34:56", "Name=lan0", "Address=10.0.0.5/24", "Address=fd00::5/64",
		"Destination=0.0.0.0/0", "Gateway=10.0.0.1", "Destination=fd00:10::/64", "Gateway=fd00::1",
		"Destination=10.96.0.0/12", "Gateway=10.0.0.2", "DNS=10.0.0.1", "Domains=cluster.internal",
	} {
		if !strings.Contains(lan, want) {
			t.Errorf("lan0 unit lacks %q:\n%s", want, lan)
		}
	}
	wan := read("10-cloud-init-wan0.network")
	for _, want := range []string{
		"MACAddress=52:54:00:ab:cd:ef", "Name=wan0", "DHCP=ipv4", "UseRoutes=False", "UseDNS=False", "RouteMetric=200",
	} {
		if !strings.Contains(wan, want) {
			t.Errorf("wan0 unit lacks %q:\n%s", want, wan)
		}
	}
}
