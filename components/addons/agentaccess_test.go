package addons

import (
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"kubeup.dev/kubeup/components"
)

// The agent-access pods are in every machine's network namespace, on every
// machine whatever its taints, run only the pinned pause image and hold no
// credentials; they exist only when the cluster asks for them.
func TestAgentAccess(t *testing.T) {
	t.Parallel()
	c := everyAddon()
	if got, _ := Workloads(c); slices.Contains(got, AgentAccessApp) {
		t.Fatalf("agent access without Addons.AgentAccess: %v", got)
	}
	c.Addons.AgentAccess = true
	c.Images.Pause = "registry.kubeup.dev/pause:3.10"
	got, err := Workloads(c)
	if err != nil || !slices.Contains(got, AgentAccessApp) {
		t.Fatalf("workloads %v (%v), want %s among them", got, err, AgentAccessApp)
	}
	a := AgentAccess(c)
	if len(a.Objects) != 1 {
		t.Fatalf("objects %d, want the DaemonSet alone", len(a.Objects))
	}
	ds, ok := a.Objects[0].(*appsv1.DaemonSet)
	if !ok || ds.Name != AgentAccessApp || ds.Namespace != Namespace || ds.Labels[components.AddonModeLabel] != components.AddonModeReconcile {
		t.Fatalf("object %#v", a.Objects[0])
	}
	spec := ds.Spec.Template.Spec
	if !spec.HostNetwork {
		t.Error("not in the machine's network namespace: a forward would not reach the agent")
	}
	if ds.Spec.Selector.MatchLabels["k8s-app"] != AgentAccessApp || ds.Spec.Template.Labels["k8s-app"] != AgentAccessApp {
		t.Errorf("selector %v, pod labels %v: the tunnel finds pods by k8s-app=%s", ds.Spec.Selector.MatchLabels, ds.Spec.Template.Labels, AgentAccessApp)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Operator != corev1.TolerationOpExists || spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %v, want every taint tolerated", spec.Tolerations)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		t.Error("the pod mounts a service account token")
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Image != c.Images.Pause || spec.Containers[0].ImagePullPolicy != corev1.PullNever {
		t.Errorf("containers %+v, want the pinned pause image, never pulled", spec.Containers)
	}
	if len(spec.Volumes) != 0 || len(spec.Containers[0].Ports) != 0 {
		t.Errorf("volumes %v, ports %v: it needs neither", spec.Volumes, spec.Containers[0].Ports)
	}
	manifests, err := Manifests(c)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range manifests {
		found = found || (strings.HasSuffix(f.Path, "/agent-access.yaml") && strings.Contains(string(f.Content), "hostNetwork: true"))
	}
	if !found {
		t.Error("no agent-access.yaml among the addon manifests")
	}
}
