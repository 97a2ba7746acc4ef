package components

import (
	"bytes"
	"strings"
	"testing"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	psaload "k8s.io/pod-security-admission/admission/api/load"
	"sigs.k8s.io/yaml"
)

// The admission configuration decodes strictly as an AdmissionConfiguration
// whose only plugin is PodSecurity, and its part, read by the PodSecurity
// plugin's own loader (load.LoadFromReader, which validates it), has the
// cluster's levels and no exemption.
func TestAdmissionConfigAsThePluginReadsIt(t *testing.T) {
	t.Parallel()
	want := PodSecurity{Enforce: PodSecurityBaseline, Audit: PodSecurityRestricted, Warn: PodSecurityRestricted}
	data, err := admissionConfig(want)
	if err != nil {
		t.Fatal(err)
	}
	var ac apiserverv1.AdmissionConfiguration
	if err := yaml.UnmarshalStrict(data, &ac); err != nil {
		t.Fatal(err)
	}
	if ac.APIVersion != "apiserver.config.k8s.io/v1" || ac.Kind != "AdmissionConfiguration" ||
		len(ac.Plugins) != 1 || ac.Plugins[0].Name != "PodSecurity" || ac.Plugins[0].Configuration == nil {
		t.Fatalf("admission configuration:\n%s", data)
	}
	cfg, err := psaload.LoadFromReader(bytes.NewReader(ac.Plugins[0].Configuration.Raw))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Defaults
	if got := (PodSecurity{Enforce: d.Enforce, Audit: d.Audit, Warn: d.Warn}); got != want {
		t.Errorf("levels %+v, want %+v", got, want)
	}
	if e := cfg.Exemptions; len(e.Namespaces)+len(e.Usernames)+len(e.RuntimeClasses) > 0 {
		t.Errorf("exemptions %+v, want none", e)
	}
}

func TestAdmissionConfigRefusesUnknownLevels(t *testing.T) {
	t.Parallel()
	_, err := admissionConfig(PodSecurity{Enforce: "strict", Audit: PodSecurityRestricted, Warn: PodSecurityRestricted})
	if err == nil || !strings.Contains(err.Error(), `enforce level "strict"`) {
		t.Errorf("err = %v", err)
	}
}

func TestPodSecurityStricter(t *testing.T) {
	t.Parallel()
	if !PodSecurityStricter(PodSecurityRestricted, PodSecurityBaseline) || !PodSecurityStricter(PodSecurityBaseline, PodSecurityPrivileged) ||
		PodSecurityStricter(PodSecurityBaseline, PodSecurityBaseline) || PodSecurityStricter(PodSecurityPrivileged, PodSecurityRestricted) {
		t.Error("level order is privileged < baseline < restricted")
	}
}
