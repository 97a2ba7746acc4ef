package addonmanager

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
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
