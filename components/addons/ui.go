package addons

import (
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/components"
)

// UI addon names and ports. The page is reached through the API server's
// service proxy, /api/v1/namespaces/kube-system/services/kubeup-ui:http/proxy/.
const (
	UIName        = "kubeup-ui"
	UIClusterRole = "kubeup:ui"
	UIPort        = 80
	UIPortName    = "http"
	uiTargetPort  = 8080
	// uiUser is the unprivileged user the UI runs as (distroless "nonroot").
	uiUser = 65532
)

// UIRules are everything the UI may do: read (get, list, watch) what the
// overview shows. No secrets, no configmaps, no writes.
func UIRules() []rbacv1.PolicyRule {
	read := []string{"get", "list", "watch"}
	return []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"nodes", "pods", "events", "namespaces", "services", "endpoints"}, Verbs: read},
		{APIGroups: []string{"events.k8s.io"}, Resources: []string{"events"}, Verbs: read},
	}
}

// UILeaseRules are what the UI may do in kube-system (Namespace) alone,
// through a Role: read the leader election Leases, to show which master
// leads the controller manager and the scheduler. Leases elsewhere, every
// node's heartbeat in kube-node-lease, are none of its business.
func UILeaseRules() []rbacv1.PolicyRule {
	return []rbacv1.PolicyRule{
		{APIGroups: []string{"coordination.k8s.io"}, Resources: []string{"leases"}, Verbs: []string{"get", "list", "watch"}},
	}
}

// UI is kubeup's read-only cluster UI (`kubeup-addons ui`): one replica on a
// master behind the kubeup-ui Service. It links to Prometheus and
// VictoriaLogs through the API server's service proxy when the monitoring
// and logging addons are on.
func UI(c *components.Cluster) Addon {
	const app = UIName
	l := labels(app)
	sa := &corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"),
		ObjectMeta: metav1.ObjectMeta{Name: UIName, Namespace: Namespace, Labels: l}}
	role := &rbacv1.ClusterRole{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: UIClusterRole, Labels: l},
		Rules:      UIRules(),
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: UIClusterRole, Labels: l},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: UIClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: UIName, Namespace: Namespace}},
	}
	leaseRole := &rbacv1.Role{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "Role"),
		ObjectMeta: metav1.ObjectMeta{Name: UIClusterRole, Namespace: Namespace, Labels: l},
		Rules:      UILeaseRules(),
	}
	leaseBinding := &rbacv1.RoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "RoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: UIClusterRole, Namespace: Namespace, Labels: l},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: UIClusterRole},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: UIName, Namespace: Namespace}},
	}

	// Off addons get empty flags: the page then says so instead of linking
	// to a proxy that answers 503.
	prometheus, metricsUI, logsUI := "", "", ""
	if c.Addons.Monitoring {
		prometheus = "http://prometheus." + Namespace + ".svc." + c.DNSDomain + ":9090"
		metricsUI = "/api/v1/namespaces/" + Namespace + "/services/prometheus:web/proxy/"
	}
	if c.Addons.Logging {
		logsUI = "/api/v1/namespaces/" + Namespace + "/services/victoria-logs:http/proxy/select/vmui/"
	}
	dep := &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: UIName, Namespace: Namespace, Labels: l},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": app}},
				Spec: corev1.PodSpec{
					ServiceAccountName: UIName,
					// No priority class: a UI must not preempt workloads.
					NodeSelector: map[string]string{components.ControlPlaneTaint: "", "kubernetes.io/os": "linux"},
					Tolerations:  pinnedTolerations(),
					SecurityContext: &corev1.PodSecurityContext{
						RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To[int64](uiUser), RunAsGroup: ptr.To[int64](uiUser),
						SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
					},
					Containers: []corev1.Container{{
						Name:  "ui",
						Image: c.Images.UI,
						// The image's entrypoint is kubeup-addons.
						Args: []string{"ui",
							"--listen=:" + strconv.Itoa(uiTargetPort),
							"--cluster-name=" + c.Name,
							"--prometheus=" + prometheus,
							"--metrics-ui-path=" + metricsUI,
							"--logs-ui-path=" + logsUI,
						},
						Ports: []corev1.ContainerPort{{Name: UIPortName, ContainerPort: uiTargetPort, Protocol: corev1.ProtocolTCP}},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("10m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("128Mi")},
						},
						// Ready once the informer caches have synced; alive while
						// it serves (a restart would not bring the API server back).
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromString(UIPortName)}},
							PeriodSeconds: 10, TimeoutSeconds: 5,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:        corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromString(UIPortName)}},
							InitialDelaySeconds: 10, PeriodSeconds: 20, TimeoutSeconds: 5,
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
	svc := &corev1.Service{
		TypeMeta:   tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: UIName, Namespace: Namespace, Labels: withName(l, "kubeup-ui")},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"k8s-app": app},
			Ports: []corev1.ServicePort{{Name: UIPortName, Port: UIPort, Protocol: corev1.ProtocolTCP,
				TargetPort: intstr.FromInt32(uiTargetPort)}},
		},
	}
	return Addon{Name: "ui", Objects: []any{sa, role, binding, leaseRole, leaseBinding, dep, svc}, PodSecurity: components.PodSecurityRestricted}
}
