package addons

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/test/golden"
)

func uiCluster() *components.Cluster {
	c := cluster()
	c.Addons.UI, c.Addons.Monitoring, c.Addons.Logging = true, true, true
	c.Images.UI = "registry.kubeup.dev/kubeup-addons:0123456789abcdef"
	return c
}

func TestUIGolden(t *testing.T) {
	objs := UI(uiCluster()).Objects
	finish(objs) // as Enabled does
	data, err := marshal(objs)
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "ui", data)
}

// uiObjects decodes the rendered UI addon strictly, document by document.
func uiObjects(t *testing.T, c *components.Cluster) map[string]any {
	t.Helper()
	data, err := marshal(UI(c).Objects)
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]func() any{
		"ServiceAccount": func() any { return &corev1.ServiceAccount{} }, "Service": func() any { return &corev1.Service{} },
		"Deployment": func() any { return &appsv1.Deployment{} }, "ClusterRole": func() any { return &rbacv1.ClusterRole{} },
		"ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
		"Role":               func() any { return &rbacv1.Role{} }, "RoleBinding": func() any { return &rbacv1.RoleBinding{} },
	}
	out := map[string]any{}
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Namespace string            `json:"namespace"`
				Labels    map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		mk, ok := types[head.Kind]
		if !ok {
			t.Fatalf("unexpected kind %q", head.Kind)
		}
		obj := mk()
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s: %v", head.Kind, err)
		}
		if head.Metadata.Labels[components.AddonModeLabel] != components.AddonModeReconcile {
			t.Errorf("%s lacks the addon manager label", head.Kind)
		}
		if head.Kind != "ClusterRole" && head.Kind != "ClusterRoleBinding" && head.Metadata.Namespace != Namespace {
			t.Errorf("%s in namespace %q", head.Kind, head.Metadata.Namespace)
		}
		out[head.Kind] = obj
	}
	if len(out) != len(types) {
		t.Errorf("kinds %v, want one of each of %d", out, len(types))
	}
	return out
}

// The UI can read what it shows and nothing else: get/list/watch only,
// never secrets, no wildcards, no non-resource URLs.
func TestUIClusterRoleIsReadOnly(t *testing.T) {
	role := uiObjects(t, uiCluster())["ClusterRole"].(*rbacv1.ClusterRole)
	if role.Name != UIClusterRole || role.AggregationRule != nil {
		t.Errorf("role %s, aggregation %v", role.Name, role.AggregationRule)
	}
	granted := map[string]bool{}
	checkReadOnly(t, role.Rules, granted)
	for _, want := range []string{"/nodes", "/pods", "/events", "events.k8s.io/events", "/namespaces", "/services", "/endpoints"} {
		if !granted[want] {
			t.Errorf("role does not grant reading %s", want)
		}
	}
	if granted["coordination.k8s.io/leases"] {
		t.Error("the ClusterRole grants reading leases in every namespace")
	}
	binding := uiObjects(t, uiCluster())["ClusterRoleBinding"].(*rbacv1.ClusterRoleBinding)
	if binding.RoleRef.Name != UIClusterRole || binding.RoleRef.Kind != "ClusterRole" ||
		len(binding.Subjects) != 1 || binding.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: UIName, Namespace: Namespace}) {
		t.Errorf("binding %+v", binding)
	}

	// Leases, for the control plane's leaders, in kube-system alone.
	objs := uiObjects(t, uiCluster())
	nsRole := objs["Role"].(*rbacv1.Role)
	granted = map[string]bool{}
	checkReadOnly(t, nsRole.Rules, granted)
	if nsRole.Name != UIClusterRole || nsRole.Namespace != Namespace || len(granted) != 1 || !granted["coordination.k8s.io/leases"] {
		t.Errorf("role %s/%s grants %v, want reading leases in %s", nsRole.Namespace, nsRole.Name, granted, Namespace)
	}
	rb := objs["RoleBinding"].(*rbacv1.RoleBinding)
	if rb.Namespace != Namespace || rb.RoleRef != (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: UIClusterRole}) ||
		len(rb.Subjects) != 1 || rb.Subjects[0] != (rbacv1.Subject{Kind: "ServiceAccount", Name: UIName, Namespace: Namespace}) {
		t.Errorf("role binding %+v", rb)
	}
}

// checkReadOnly fails rules that grant more than get/list/watch of named
// resources other than secrets, and records what they grant as
// "group/resource".
func checkReadOnly(t *testing.T, rules []rbacv1.PolicyRule, granted map[string]bool) {
	t.Helper()
	for _, r := range rules {
		for _, v := range r.Verbs {
			if v != "get" && v != "list" && v != "watch" {
				t.Errorf("rule %v grants %q", r, v)
			}
		}
		for _, res := range r.Resources {
			if res == "secrets" || res == "*" || strings.Contains(res, "/") || strings.Contains(res, "secret") {
				t.Errorf("rule %v grants resource %q", r, res)
			}
			for _, g := range r.APIGroups {
				granted[g+"/"+res] = true
			}
		}
		if slices.Contains(r.APIGroups, "*") || len(r.NonResourceURLs) > 0 || len(r.APIGroups) == 0 {
			t.Errorf("rule %v: wildcard group, non-resource URLs, or no group", r)
		}
	}
}

func TestUIDeploymentIsLockedDown(t *testing.T) {
	objs := uiObjects(t, uiCluster())
	dep := objs["Deployment"].(*appsv1.Deployment)
	spec := dep.Spec.Template.Spec
	if *dep.Spec.Replicas != 1 || spec.ServiceAccountName != UIName {
		t.Errorf("replicas %d, service account %q", *dep.Spec.Replicas, spec.ServiceAccountName)
	}
	if v, ok := spec.NodeSelector[components.ControlPlaneTaint]; !ok || v != "" {
		t.Errorf("node selector %v does not pin the UI to masters", spec.NodeSelector)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == components.ControlPlaneTaint }) {
		t.Errorf("tolerations %v do not tolerate masters", spec.Tolerations)
	}
	if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod security context %+v", psc)
	}
	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers", len(spec.Containers))
	}
	ctr := spec.Containers[0]
	sc := ctr.SecurityContext
	if sc == nil || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !*sc.RunAsNonRoot ||
		sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) != 0 || sc.Privileged != nil {
		t.Errorf("container security context %+v", sc)
	}
	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("resources %+v", ctr.Resources)
	}
	if len(ctr.Ports) != 1 || ctr.Ports[0].Name != "http" || ctr.Ports[0].ContainerPort != 8080 {
		t.Errorf("ports %+v", ctr.Ports)
	}
	if ctr.Args[0] != "ui" || !slices.Contains(ctr.Args, "--listen=:8080") ||
		!slices.Contains(ctr.Args, "--prometheus=http://prometheus.kube-system.svc.cluster.local:9090") {
		t.Errorf("args %q", ctr.Args)
	}

	svc := objs["Service"].(*corev1.Service)
	if svc.Name != "kubeup-ui" || len(svc.Spec.Ports) != 1 {
		t.Fatalf("service %+v", svc)
	}
	if p := svc.Spec.Ports[0]; p.Name != "http" || p.Port != 80 || p.TargetPort.IntValue() != 8080 {
		t.Errorf("service port %+v", p)
	}
	if !selects(svc.Spec.Selector, dep.Spec.Template.Labels) || !selects(dep.Spec.Selector.MatchLabels, dep.Spec.Template.Labels) {
		t.Error("selectors do not match the pod template")
	}
}

// Without the monitoring and logging addons the UI gets no Prometheus and
// no links, instead of links to proxies that answer 503.
func TestUIWithoutMonitoringAndLogging(t *testing.T) {
	c := uiCluster()
	c.Addons.Monitoring, c.Addons.Logging = false, false
	dep := uiObjects(t, c)["Deployment"].(*appsv1.Deployment)
	args := dep.Spec.Template.Spec.Containers[0].Args
	for _, want := range []string{"--prometheus=", "--metrics-ui-path=", "--logs-ui-path="} {
		if !slices.Contains(args, want) {
			t.Errorf("args %q lack %q", args, want)
		}
	}
}

func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return len(selector) > 0
}
