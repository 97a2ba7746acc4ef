package addons

import (
	"maps"
	"net/netip"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	psaapi "k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"

	"kubeup.dev/kubeup/components"
)

func allAddons() *components.Cluster {
	c := cluster()
	c.Addons = components.Addons{DNS: true, Monitoring: true, Logging: true, UI: true, AgentAccess: true}
	c.Masters = []components.Machine{{Name: "master-0", Role: components.Master, IP: netip.MustParseAddr("10.77.0.10")}}
	c.LogForward = "10.96.0.11:24224"
	return c
}

// PodTemplates are the pod templates of an addon's workloads.
func podTemplates(a Addon) map[string]*corev1.PodTemplateSpec {
	out := map[string]*corev1.PodTemplateSpec{}
	for _, o := range a.Objects {
		switch w := o.(type) {
		case *appsv1.Deployment:
			out[w.Name] = &w.Spec.Template
		case *appsv1.StatefulSet:
			out[w.Name] = &w.Spec.Template
		case *appsv1.DaemonSet:
			out[w.Name] = &w.Spec.Template
		}
	}
	return out
}

// allowed evaluates a pod at a level with the Pod Security admission
// plugin's own checks.
func allowed(t *testing.T, level string, meta *metav1.ObjectMeta, spec *corev1.PodSpec) (bool, string) {
	t.Helper()
	ev, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := psaapi.ParseLevel(level)
	if err != nil {
		t.Fatal(err)
	}
	res := policy.AggregateCheckResults(ev.EvaluatePod(psaapi.LevelVersion{Level: l, Version: psaapi.LatestVersion()}, meta, spec))
	return res.Allowed, res.ForbiddenDetail()
}

// Each addon's PodSecurity is the least strict level its pods need: every
// pod passes it and, unless it is restricted, some pod fails the next
// stricter one (so no addon claims more than it needs).
func TestAddonPodSecurityIsWhatItsPodsNeed(t *testing.T) {
	t.Parallel()
	enabled, err := Enabled(allAddons())
	if err != nil {
		t.Fatal(err)
	}
	levels := components.PodSecurityLevels()
	for _, a := range enabled {
		i := slices.Index(levels, a.PodSecurity)
		if i < 0 {
			t.Errorf("addon %s: PodSecurity %q is not a level", a.Name, a.PodSecurity)
			continue
		}
		pods := podTemplates(a)
		if len(pods) == 0 {
			t.Errorf("addon %s has no workload", a.Name)
		}
		failsStricter := i == len(levels)-1
		for _, name := range slices.Sorted(maps.Keys(pods)) {
			p := pods[name]
			if ok, why := allowed(t, a.PodSecurity, &p.ObjectMeta, &p.Spec); !ok {
				t.Errorf("addon %s: %s breaks its level %s: %s", a.Name, name, a.PodSecurity, why)
			}
			if !failsStricter {
				ok, _ := allowed(t, levels[i+1], &p.ObjectMeta, &p.Spec)
				failsStricter = !ok
			}
		}
		if !failsStricter {
			t.Errorf("addon %s: every pod passes %s; its PodSecurity %s asks for more than it needs", a.Name, levels[i+1], a.PodSecurity)
		}
	}
}

// The addons' namespace carries a label for a mode only where the cluster's
// level is stricter than its addons need.
func TestAddonNamespaceLabels(t *testing.T) {
	t.Parallel()
	label := components.PodSecurityLabel
	cases := []struct {
		name   string
		addons components.Addons
		levels components.PodSecurity
		want   map[string]string
	}{
		{"defaults, every addon", components.Addons{DNS: true, Monitoring: true, Logging: true, UI: true},
			components.PodSecurity{Enforce: "baseline", Audit: "restricted", Warn: "restricted"},
			map[string]string{label("enforce"): "privileged", label("audit"): "privileged", label("warn"): "privileged"}},
		{"defaults, DNS and UI", components.Addons{DNS: true, UI: true},
			components.PodSecurity{Enforce: "baseline", Audit: "restricted", Warn: "restricted"},
			map[string]string{label("audit"): "baseline", label("warn"): "baseline"}},
		{"everything privileged", components.Addons{DNS: true, Monitoring: true, Logging: true, UI: true},
			components.PodSecurity{Enforce: "privileged", Audit: "privileged", Warn: "privileged"},
			map[string]string{}},
		{"UI only, restricted", components.Addons{UI: true},
			components.PodSecurity{Enforce: "restricted", Audit: "restricted", Warn: "restricted"},
			map[string]string{}},
	}
	for _, tc := range cases {
		c := allAddons()
		c.Addons, c.PodSecurity = tc.addons, tc.levels
		enabled, err := Enabled(c)
		if err != nil {
			t.Fatal(err)
		}
		ns := AddonNamespace(c, enabled)
		got := maps.Clone(ns.Labels)
		if got[components.AddonModeLabel] != components.AddonModeReconcile || ns.Name != "kube-system" {
			t.Errorf("%s: namespace %s labels %v", tc.name, ns.Name, got)
		}
		delete(got, components.AddonModeLabel)
		if !maps.Equal(got, tc.want) {
			t.Errorf("%s: labels %v, want %v", tc.name, got, tc.want)
		}
	}
}
