package components

import (
	"encoding/json"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/runtime"
	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	psav1 "k8s.io/pod-security-admission/admission/api/v1"
	"sigs.k8s.io/yaml"
)

// PodSecurity are the Pod Security Standards levels the API server's
// PodSecurity admission plugin applies to every namespace that does not set
// its own with PodSecurityLabel: pods that break Enforce are refused, those
// that break Audit are marked in the audit log, those that break Warn get
// their creator a warning.
type PodSecurity struct {
	Enforce string `json:"enforce"`
	Audit   string `json:"audit"`
	Warn    string `json:"warn"`
}

// Pod Security Standards levels.
const (
	PodSecurityPrivileged = "privileged"
	PodSecurityBaseline   = "baseline"
	PodSecurityRestricted = "restricted"
)

// PodSecurityLevels lists the levels, least strict first.
func PodSecurityLevels() []string {
	return []string{PodSecurityPrivileged, PodSecurityBaseline, PodSecurityRestricted}
}

// PodSecurityStricter reports whether level a is stricter than level b.
func PodSecurityStricter(a, b string) bool {
	return slices.Index(PodSecurityLevels(), a) > slices.Index(PodSecurityLevels(), b)
}

// PodSecurityLabel is the namespace label that sets a mode's level
// ("enforce", "audit" or "warn") for that namespace.
func PodSecurityLabel(mode string) string { return "pod-security.kubernetes.io/" + mode }

// Modes returns the levels by mode name.
func (p PodSecurity) Modes() map[string]string {
	return map[string]string{"enforce": p.Enforce, "audit": p.Audit, "warn": p.Warn}
}

// AdmissionConfigPath is the API server's admission plugin configuration.
const AdmissionConfigPath = KubernetesDir + "/admission-config.yaml"

// admissionConfig is the AdmissionConfiguration that sets PodSecurity's
// cluster-wide levels. It exempts nothing: the namespace kubeup's addons
// run in is labelled with the level they need instead (components/addons),
// so that the exception is visible on the namespace and nothing else
// shares it.
func admissionConfig(p PodSecurity) ([]byte, error) {
	for mode, level := range p.Modes() {
		if !slices.Contains(PodSecurityLevels(), level) {
			return nil, fmt.Errorf("pod security %s level %q is not one of %v", mode, level, PodSecurityLevels())
		}
	}
	psc := psav1.PodSecurityConfiguration{Defaults: psav1.PodSecurityDefaults{Enforce: p.Enforce, Audit: p.Audit, Warn: p.Warn}}
	psc.APIVersion, psc.Kind = "pod-security.admission.config.k8s.io/v1", "PodSecurityConfiguration"
	raw, err := json.Marshal(psc)
	if err != nil {
		return nil, fmt.Errorf("pod security configuration: %w", err)
	}
	cfg := apiserverv1.AdmissionConfiguration{Plugins: []apiserverv1.AdmissionPluginConfiguration{
		{Name: "PodSecurity", Configuration: &runtime.Unknown{Raw: raw, ContentType: runtime.ContentTypeJSON}},
	}}
	cfg.APIVersion, cfg.Kind = "apiserver.config.k8s.io/v1", "AdmissionConfiguration"
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("admission configuration: %w", err)
	}
	return data, nil
}
