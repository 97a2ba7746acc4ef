package addons

import (
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
)

// Namespace every addon lives in.
const Namespace = "kube-system"

// Addon is one addon's objects.
type Addon struct {
	Name    string
	Objects []any
	// PodSecurity is the least strict Pod Security level its pods need
	// (components.PodSecurityPrivileged, ...); a test checks it with the
	// upstream policy.
	PodSecurity string
}

// Manifests renders the enabled addons as files for ClusterAddonDir, and
// the addons' namespace (NamespaceFile).
func Manifests(c *components.Cluster) ([]components.File, error) {
	enabled, err := Enabled(c)
	if err != nil {
		return nil, err
	}
	var out []components.File
	for _, a := range enabled {
		data, err := marshal(a.Objects)
		if err != nil {
			return nil, fmt.Errorf("addon %s: %w", a.Name, err)
		}
		out = append(out, components.File{Path: components.ClusterAddonDir + "/" + a.Name + ".yaml", Mode: 0o644, Content: data})
	}
	data, err := marshal([]any{AddonNamespace(c, enabled)})
	if err != nil {
		return nil, fmt.Errorf("addon namespace: %w", err)
	}
	return append(out, components.File{Path: components.ClusterAddonDir + "/" + NamespaceFile, Mode: 0o644, Content: data}), nil
}

// NamespaceFile declares the addons' namespace.
const NamespaceFile = "namespace.yaml"

// AddonNamespace is the namespace the addons run in, labelled with the Pod
// Security level their pods need for each mode whose cluster-wide level is
// stricter, and with nothing else: with the default levels, kube-system is
// privileged because Prometheus, VictoriaLogs and the log aggregator keep
// their data in hostPath directories on the master, and no other namespace
// gets an exception. It is declared even when it needs no label, so that
// the addon manager removes labels a new config no longer needs instead of
// ever pruning the namespace.
func AddonNamespace(c *components.Cluster, enabled []Addon) *corev1.Namespace {
	need := components.PodSecurityRestricted
	for _, a := range enabled {
		if components.PodSecurityStricter(need, a.PodSecurity) {
			need = a.PodSecurity
		}
	}
	l := map[string]string{components.AddonModeLabel: components.AddonModeReconcile}
	for mode, level := range c.PodSecurity.Modes() {
		if components.PodSecurityStricter(level, need) {
			l[components.PodSecurityLabel(mode)] = need
		}
	}
	return &corev1.Namespace{TypeMeta: tm("v1", "Namespace"), ObjectMeta: metav1.ObjectMeta{Name: Namespace, Labels: l}}
}

// Enabled lists the addons the cluster turned on, in apply order.
func Enabled(c *components.Cluster) ([]Addon, error) {
	var out []Addon
	if c.Addons.DNS {
		out = append(out, DNS(c))
	}
	if c.Addons.Monitoring {
		m, err := Monitoring(c)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	if c.Addons.Logging {
		l, err := Logging(c)
		if err != nil {
			return nil, err
		}
		out = append(out, l)
	}
	if c.Addons.UI {
		out = append(out, UI(c))
	}
	if c.Addons.AgentAccess {
		out = append(out, AgentAccess(c))
	}
	for _, a := range out {
		finish(a.Objects)
	}
	return out, nil
}

// finish applies what every addon's workloads get: startup probes and
// one Go processor.
func finish(objs []any) {
	addStartupProbes(objs)
	oneProcessor(objs)
}

// Workloads names the Deployments, StatefulSets and DaemonSets of the
// enabled addons: the pod name prefixes a healthy cluster has Ready in
// kube-system.
func Workloads(c *components.Cluster) ([]string, error) {
	enabled, err := Enabled(c)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, a := range enabled {
		for _, o := range a.Objects {
			if name, spec := workload(o); spec != nil {
				out = append(out, name)
			}
		}
	}
	return out, nil
}

// workload returns a Deployment's, StatefulSet's or DaemonSet's name and
// pod spec; nil for any other object.
func workload(o any) (string, *corev1.PodSpec) {
	switch w := o.(type) {
	case *appsv1.Deployment:
		return w.Name, &w.Spec.Template.Spec
	case *appsv1.StatefulSet:
		return w.Name, &w.Spec.Template.Spec
	case *appsv1.DaemonSet:
		return w.Name, &w.Spec.Template.Spec
	}
	return "", nil
}

func marshal(objs []any) ([]byte, error) {
	var out []byte
	for i, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, data...)
	}
	return out, nil
}

// labels marks an object as the addon manager's to keep as declared.
func labels(app string) map[string]string {
	return map[string]string{components.AddonModeLabel: components.AddonModeReconcile, "k8s-app": app}
}
