package addons

import (
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/components"
)

// AgentAccessApp names the agent-access DaemonSet and its pods' k8s-app
// label.
const AgentAccessApp = "kubeup-agent-access"

// pauseUser is the user the pause image runs as (its image config's).
const pauseUser = 65535

// AgentAccess is how the host reaches the machines' agents on a cloud, where
// only the API's load balancer is open to it: one pod on every machine in
// the machine's network namespace, running nothing but pause (the image
// every machine has pinned), to which `kubeup` opens a port forward through
// the API server (pods/portforward; containerd dials the port on the pod's
// loopback, which is the machine's). The agent keeps checking the client's
// certificate, so the forward grants nothing that the admin's credentials do
// not. It tolerates every taint, so that a NotReady machine can still be
// diagnosed while its kubelet runs.
func AgentAccess(c *components.Cluster) Addon {
	l := labels(AgentAccessApp)
	ds := &appsv1.DaemonSet{
		TypeMeta:   tm("apps/v1", "DaemonSet"),
		ObjectMeta: metav1.ObjectMeta{Name: AgentAccessApp, Namespace: Namespace, Labels: l},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": AgentAccessApp}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": AgentAccessApp}},
				Spec: corev1.PodSpec{
					HostNetwork:                   true,
					AutomountServiceAccountToken:  ptr.To(false),
					EnableServiceLinks:            ptr.To(false),
					PriorityClassName:             "system-node-critical",
					NodeSelector:                  map[string]string{"kubernetes.io/os": "linux"},
					Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					TerminationGracePeriodSeconds: ptr.To[int64](1),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](pauseUser), RunAsGroup: ptr.To[int64](pauseUser),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  "pause",
						Image: c.Images.Pause,
						// Pinned in every machine's containerd: never pulled.
						ImagePullPolicy: corev1.PullNever,
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1m"), corev1.ResourceMemory: resource.MustParse("4Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("16Mi")},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							RunAsNonRoot:             ptr.To(true),
							Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
						},
					}},
				},
			},
		},
	}
	// A host-network pod is beyond the baseline level.
	return Addon{Name: "agent-access", Objects: []any{ds}, PodSecurity: components.PodSecurityPrivileged}
}
