package addons

import (
	"fmt"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/components"
)

// DNS is the cluster DNS addon: CoreDNS behind the kube-dns Service at the
// service CIDR's tenth address, where every kubelet points its pods.
func DNS(c *components.Cluster) Addon {
	const name, app = "coredns", "kube-dns"
	l := labels(app)
	meta := func(n string) metav1.ObjectMeta {
		return metav1.ObjectMeta{Name: n, Namespace: Namespace, Labels: l}
	}
	sa := &corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta(name)}
	role := &rbacv1.ClusterRole{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns", Labels: l},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"endpoints", "services", "pods", "namespaces"}, Verbs: []string{"list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"list", "watch"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: "system:coredns", Labels: l},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "system:coredns"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: Namespace}},
	}
	cm := &corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta(name),
		Data: map[string]string{"Corefile": Corefile(c)}}
	dep := &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: meta(name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxUnavailable: ptr.To(intstr.FromInt32(1))}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": app}},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					PriorityClassName:  "system-cluster-critical",
					DNSPolicy:          corev1.DNSDefault,
					NodeSelector:       map[string]string{"kubernetes.io/os": "linux"},
					Tolerations:        dnsTolerations(c),
					Affinity: &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{
						PreferredDuringSchedulingIgnoredDuringExecution: []corev1.WeightedPodAffinityTerm{{
							Weight: 100,
							PodAffinityTerm: corev1.PodAffinityTerm{
								LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}},
								TopologyKey:   "kubernetes.io/hostname",
							},
						}},
					}},
					Containers: []corev1.Container{{
						Name:  "coredns",
						Image: c.Images.CoreDNS,
						Args:  []string{"-conf", "/etc/coredns/Corefile"},
						Ports: []corev1.ContainerPort{
							{Name: "dns", ContainerPort: 53, Protocol: corev1.ProtocolUDP},
							{Name: "dns-tcp", ContainerPort: 53, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: 9153, Protocol: corev1.ProtocolTCP},
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("70Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("170Mi")},
						},
						VolumeMounts: []corev1.VolumeMount{{Name: "config", MountPath: "/etc/coredns", ReadOnly: true}},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(8080)}},
							InitialDelaySeconds: 60, TimeoutSeconds: 5, FailureThreshold: 5,
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromInt32(8181)}},
						},
						SecurityContext: &corev1.SecurityContext{
							AllowPrivilegeEscalation: ptr.To(false),
							ReadOnlyRootFilesystem:   ptr.To(true),
							// The image's binary carries cap_net_bind_service (it
							// runs as 65532 and binds port 53).
							Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}},
						},
					}},
					Volumes: []corev1.Volume{{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
						LocalObjectReference: corev1.LocalObjectReference{Name: name},
						Items:                []corev1.KeyToPath{{Key: "Corefile", Path: "Corefile"}},
					}}}},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta: tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: Namespace, Labels: withName(l, "CoreDNS"),
			Annotations: map[string]string{"prometheus.io/port": "9153", "prometheus.io/scrape": "true"}},
		Spec: corev1.ServiceSpec{
			Selector:  map[string]string{"k8s-app": app},
			ClusterIP: c.DNSServiceIP.String(),
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(53)},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(53)},
				{Name: "metrics", Port: 9153, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(9153)},
			},
		},
	}
	return Addon{Name: "dns", Objects: []any{sa, role, binding, cm, dep, svc}, PodSecurity: components.PodSecurityBaseline}
}

// Corefile is CoreDNS's configuration: cluster names from the API, and
// other names forwarded upstream when the machines have an upstream
// resolver (an air-gapped local cluster has none, so there is no forward).
func Corefile(c *components.Cluster) string {
	var b strings.Builder
	fmt.Fprintf(&b, `.:53 {
    errors
    health {
        lameduck 5s
    }
    ready
    kubernetes %s in-addr.arpa ip6.arpa {
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }
    prometheus :9153
`, c.DNSDomain)
	if c.UpstreamDNS {
		b.WriteString("    forward . /etc/resolv.conf {\n        max_concurrent 1000\n    }\n")
	}
	b.WriteString("    cache 30\n    loop\n    reload\n    loadbalance\n}\n")
	return b.String()
}

// dnsTolerations keep CoreDNS off the masters of a cluster with nodes: it
// tolerates the masters' NoSchedule taint only when there is nowhere else
// (a cluster of masters alone), as on kOps and the managed clouds. Its two
// replicas and their shims were a fifth of a TCG master's CPU at rest
// (2026-12-07: coredns 5-16%, the shims 14% with the UI's), on the machine
// whose API server every request waits for.
func dnsTolerations(c *components.Cluster) []corev1.Toleration {
	if hasNodes(c) {
		return []corev1.Toleration{{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists}}
	}
	return criticalTolerations()
}

// hasNodes says whether the cluster has machines that are not masters: its
// addon machine is then a node. A config rendered before AddonMachine
// existed says no (its addons stay where they were).
func hasNodes(c *components.Cluster) bool {
	if c.AddonMachine == "" {
		return false
	}
	for _, m := range c.Masters {
		if m.Name == c.AddonMachine {
			return false
		}
	}
	return true
}

// criticalTolerations let addons run on masters (tainted NoSchedule).
func criticalTolerations() []corev1.Toleration {
	return []corev1.Toleration{
		{Key: "CriticalAddonsOnly", Operator: corev1.TolerationOpExists},
		{Key: components.ControlPlaneTaint, Effect: corev1.TaintEffectNoSchedule},
	}
}

// pinnedTolerations are those of the addons pinned to one machine (their
// data is a hostPath there) or to masters (the UI): they also stay through
// its NotReady and Unreachable taints, as a DaemonSet's pods do. Evicting
// them cannot move them anywhere else, and on a machine slow to report (an
// API server restarting, TCG under load) it killed working Prometheus and
// log-store pods and left them Pending until the machine reported again.
func pinnedTolerations() []corev1.Toleration {
	return append(criticalTolerations(),
		corev1.Toleration{Key: "node.kubernetes.io/not-ready", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		corev1.Toleration{Key: "node.kubernetes.io/unreachable", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
	)
}

func tm(apiVersion, kind string) metav1.TypeMeta {
	return metav1.TypeMeta{APIVersion: apiVersion, Kind: kind}
}

func withName(l map[string]string, name string) map[string]string {
	out := map[string]string{"kubernetes.io/name": name}
	for k, v := range l {
		out[k] = v
	}
	return out
}
