package addonmanager

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
)

// Config file identity.
const (
	ConfigAPIVersion = "kubeup.dev/v1alpha1"
	ConfigKind       = "AddonManagerConfig"
)

// minResync bounds how often everything is re-applied: below it the manager
// would mostly talk to the API server about objects that did not change.
const minResync = 5 * time.Second

// LoadConfig reads and validates the addon manager's configuration file.
func LoadConfig(path string) (components.AddonManagerConfig, error) {
	var cfg components.AddonManagerConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return cfg, fmt.Errorf("read addon manager config: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	if err := ValidateConfig(cfg); err != nil {
		return cfg, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ValidateConfig returns every problem of cfg at once, each with its field.
func ValidateConfig(cfg components.AddonManagerConfig) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if cfg.APIVersion != ConfigAPIVersion {
		bad("apiVersion", "%q is not supported; use %s", cfg.APIVersion, ConfigAPIVersion)
	}
	if cfg.Kind != ConfigKind {
		bad("kind", "%q is not supported; use %s", cfg.Kind, ConfigKind)
	}
	if cfg.Kubeconfig == "" {
		bad("kubeconfig", "is required")
	}
	if len(cfg.ManifestDirs) == 0 {
		bad("manifestDirs", "at least one directory is required")
	}
	for i, d := range cfg.ManifestDirs {
		if d == "" {
			bad(fmt.Sprintf("manifestDirs[%d]", i), "is empty")
		}
	}
	if cfg.Resync.Duration < minResync {
		bad("resync", "%s is shorter than %s", cfg.Resync.Duration, minResync)
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		bad("listen", "%q is not host:port: %v", cfg.Listen, err)
	}
	for _, f := range []struct{ field, value string }{
		{"certFile", cfg.CertFile}, {"keyFile", cfg.KeyFile}, {"clientCAFile", cfg.ClientCAFile},
		{"signer.certFile", cfg.Signer.CertFile}, {"signer.keyFile", cfg.Signer.KeyFile},
	} {
		if f.value == "" {
			bad(f.field, "is required")
		}
	}
	if cfg.Signer.Duration.Duration < minSignDuration {
		bad("signer.duration", "%s is shorter than %s", cfg.Signer.Duration.Duration, minSignDuration)
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("invalid addon manager config: %w", errors.Join(errs...))
}
