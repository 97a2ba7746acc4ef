package addonmanager

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
)

// The config kubeup renders for a master must load: the golden file is the
// catalogue's own output (components/testdata).
func TestLoadConfigRendered(t *testing.T) {
	cfg, err := LoadConfig("../../components/testdata/files/master-0/etc/kubeup/addon-manager.yaml.golden")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Resync.Duration != time.Minute || len(cfg.ManifestDirs) != 2 || cfg.ManifestDirs[0] != components.ImageAddonDir ||
		cfg.Signer.KeyFile != "/etc/kubernetes/pki/ca.key" || cfg.Signer.Duration.Duration != 8760*time.Hour {
		t.Errorf("config = %+v", cfg)
	}
}

func TestLoadConfigInvalid(t *testing.T) {
	p := filepath.Join(t.TempDir(), "am.yaml")
	if err := os.WriteFile(p, []byte("apiVersion: v1\nkind: AddonManagerConfig\nresync: 1s\nlisten: nohost\nmanifestDirs: ['']\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	if err == nil {
		t.Fatal("invalid config loaded")
	}
	for _, want := range []string{p, "apiVersion", "kubeconfig", "manifestDirs[0]", "resync", "listen", "certFile", "keyFile", "clientCAFile",
		"signer.certFile", "signer.keyFile", "signer.duration"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %s", err, want)
		}
	}
	if err := os.WriteFile(p, []byte("apiVersion: kubeup.dev/v1alpha1\nkind: AddonManagerConfig\nresyncPeriod: 1m\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil || !strings.Contains(err.Error(), "resyncPeriod") {
		t.Errorf("unknown field: err = %v, want it named", err)
	}
}

// The cluster in the config survives YAML: the addons rendered from the
// loaded config are byte for byte those rendered from the cluster itself,
// for a cluster with every field set and every addon on.
func TestConfigAddonsRoundTrip(t *testing.T) {
	c := &components.Cluster{
		Name: "demo", KubernetesVersion: "v1.37.2",
		Masters:     []components.Machine{{Name: "master-0", Role: components.Master, IP: netip.MustParseAddr("10.77.0.10")}},
		MachineCIDR: netip.MustParsePrefix("10.77.0.0/24"), MachineGateway: netip.MustParseAddr("10.77.0.2"),
		PodCIDR: netip.MustParsePrefix("10.244.0.0/16"), NodeCIDRMaskSize: 24,
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"), APIServerServiceIP: netip.MustParseAddr("10.96.0.1"),
		DNSServiceIP: netip.MustParseAddr("10.96.0.10"), DNSDomain: "cluster.local",
		APIServerEndpoint: "https://10.77.0.10:6443", LogForward: "10.77.0.10:24224",
		Images: components.Images{Pause: "p:1", CoreDNS: "c:1", Testbox: "t:1", Prometheus: "pr:1", LogStore: "ls:1",
			LogAggregator: "la:1", UI: "ui:1"},
		Addons:        components.Addons{DNS: true, Monitoring: true, Logging: true, UI: true},
		UpstreamDNS:   true,
		PodSecurity:   components.PodSecurity{Enforce: components.PodSecurityBaseline, Audit: components.PodSecurityRestricted, Warn: components.PodSecurityRestricted},
		LeafLifetime:  8760 * time.Hour,
		EtcdSnapshots: components.EtcdSnapshots{Interval: time.Hour, Keep: 24},
	}
	files, err := components.AddonManager{}.Files(components.Context{Cluster: c, Machine: c.Masters[0],
		Secrets: components.Secrets{BootstrapToken: "abcdef.0123456789abcdef"}})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "am.yaml")
	if err := os.WriteFile(p, files[0].Content, 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Addons, c) {
		t.Errorf("cluster after YAML:\n%+v\nwant\n%+v", cfg.Addons, c)
	}
	want, err := addons.Manifests(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := addons.Manifests(cfg.Addons)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 || !reflect.DeepEqual(got, want) {
		t.Errorf("rendered %d files from the loaded config, %d from the cluster (or they differ)", len(got), len(want))
	}
	// And the manager accepts them: every object labelled, none twice.
	loaded, err := LoadManifests(nil, got...)
	if err != nil || len(loaded) < 20 {
		t.Errorf("LoadManifests(rendered): %d objects, %v", len(loaded), err)
	}
	for _, a := range loaded {
		if !strings.HasPrefix(a.Source, RenderedSource) {
			t.Errorf("%s: source %q", a, a.Source)
		}
	}
}
