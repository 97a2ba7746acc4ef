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
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
)

// Prometheus' place in the cluster.
const (
	PrometheusPort    = 9090
	PrometheusDataDir = "/var/lib/kubeup/prometheus"
	// PrometheusProxyPath is where the API server's service proxy serves
	// the UI; Prometheus needs it to build its links.
	PrometheusProxyPath = "/api/v1/namespaces/kube-system/services/prometheus:web/proxy/"
	saDir               = "/var/run/secrets/kubernetes.io/serviceaccount"
)

// Monitoring is the monitoring addon: Prometheus (with its web UI) on the
// addon machine, scraping every component over TLS with its ServiceAccount
// token (RBAC: /metrics and nodes/metrics); what only serves plain HTTP on
// loopback (etcd, containerd, kube-proxy) it reaches through the agents.
// Data lives on that machine's disk ("persistent enough" for a test
// cluster), retained for 7 days.
func Monitoring(c *components.Cluster) (Addon, error) {
	const name, app = "prometheus", "prometheus"
	l := labels(app)
	meta := func(n string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: n, Namespace: Namespace, Labels: l} }
	cfg, err := PrometheusConfig(c)
	if err != nil {
		return Addon{}, err
	}
	sa := &corev1.ServiceAccount{TypeMeta: tm("v1", "ServiceAccount"), ObjectMeta: meta(name)}
	role := &rbacv1.ClusterRole{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRole"),
		ObjectMeta: metav1.ObjectMeta{Name: "kubeup:prometheus", Labels: l},
		Rules: []rbacv1.PolicyRule{
			{APIGroups: []string{""}, Resources: []string{"nodes", "services", "endpoints", "pods"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: []string{"get", "list", "watch"}},
			{APIGroups: []string{""}, Resources: []string{"nodes/metrics"}, Verbs: []string{"get"}},
			{NonResourceURLs: []string{"/metrics", "/metrics/*"}, Verbs: []string{"get"}},
		},
	}
	binding := &rbacv1.ClusterRoleBinding{
		TypeMeta:   tm("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
		ObjectMeta: metav1.ObjectMeta{Name: "kubeup:prometheus", Labels: l},
		RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "kubeup:prometheus"},
		Subjects:   []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: name, Namespace: Namespace}},
	}
	cm := &corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta(name), Data: map[string]string{"prometheus.yml": cfg}}
	dep := &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: meta(name),
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			// One writer for the data directory: never two at once.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": app}},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					PriorityClassName:  "system-cluster-critical",
					NodeSelector:       onAddonMachine(c),
					Tolerations:        pinnedTolerations(),
					SecurityContext:    &corev1.PodSecurityContext{RunAsUser: ptr.To[int64](65534), RunAsGroup: ptr.To[int64](65534), RunAsNonRoot: ptr.To(true)},
					InitContainers: []corev1.Container{{
						// The data directory is a hostPath created by the kubelet
						// as root; hand it to Prometheus' user.
						Name: "chown-data", Image: c.Images.Testbox,
						Command:         []string{"/bin/busybox", "chown", "-R", "65534:65534", "/prometheus"},
						SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To[int64](0), RunAsNonRoot: ptr.To(false), Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: []corev1.Capability{"CHOWN", "DAC_OVERRIDE", "FOWNER"}}},
						VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/prometheus"}},
					}},
					Containers: []corev1.Container{{
						Name:  "prometheus",
						Image: c.Images.Prometheus,
						Args: []string{
							"--config.file=/etc/prometheus/prometheus.yml",
							"--storage.tsdb.path=/prometheus",
							"--storage.tsdb.retention.time=7d",
							"--web.listen-address=:" + fmt.Sprint(PrometheusPort),
							"--web.external-url=http://localhost" + PrometheusProxyPath,
							"--web.route-prefix=/",
						},
						Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: PrometheusPort}},
						ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/ready", Port: intstr.FromInt32(PrometheusPort)}},
							PeriodSeconds: 5, TimeoutSeconds: 5},
						// Liveness applies once the startup probe every addon
						// gets (addStartupProbes) has passed: a start replays
						// the WAL.
						LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/-/healthy", Port: intstr.FromInt32(PrometheusPort)}},
							PeriodSeconds: 15, TimeoutSeconds: 10, FailureThreshold: 6},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("200Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("600Mi")},
						},
						SecurityContext: &corev1.SecurityContext{AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
							Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}},
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config", MountPath: "/etc/prometheus", ReadOnly: true},
							{Name: "data", MountPath: "/prometheus"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}},
						{Name: "data", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: PrometheusDataDir, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}},
					},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta:   tm("v1", "Service"),
		ObjectMeta: meta(name),
		Spec: corev1.ServiceSpec{Selector: map[string]string{"k8s-app": app},
			Ports: []corev1.ServicePort{{Name: "web", Port: PrometheusPort, TargetPort: intstr.FromInt32(PrometheusPort)}}},
	}
	return Addon{Name: "monitoring", Objects: []any{sa, role, binding, cm, dep, svc}, PodSecurity: components.PodSecurityPrivileged}, nil
}

// mastersOnly pins a pod to masters (the UI: only master images carry the
// kubeup-addons image).
func mastersOnly() map[string]string {
	return map[string]string{components.ControlPlaneTaint: ""}
}

// onAddonMachine pins a pod whose data is a hostPath to the cluster's
// addon machine (the first node, or the first master without nodes): the
// same machine after every restart, so the data is there. Without one (a
// config rendered before AddonMachine), on masters.
func onAddonMachine(c *components.Cluster) map[string]string {
	if c.AddonMachine == "" {
		return mastersOnly()
	}
	return map[string]string{corev1.LabelHostname: c.AddonMachine}
}

// scrape is one Prometheus scrape job (only the fields kubeup uses).
type scrape struct {
	JobName        string         `json:"job_name"`
	Scheme         string         `json:"scheme,omitempty"`
	MetricsPath    string         `json:"metrics_path,omitempty"`
	ScrapeInterval string         `json:"scrape_interval,omitempty"`
	TLSConfig      *tlsConfig     `json:"tls_config,omitempty"`
	Authorization  *authorization `json:"authorization,omitempty"`
	StaticConfigs  []staticConfig `json:"static_configs,omitempty"`
	KubernetesSD   []kubernetesSD `json:"kubernetes_sd_configs,omitempty"`
	RelabelConfigs []relabel      `json:"relabel_configs,omitempty"`
	MetricRelabels []relabel      `json:"metric_relabel_configs,omitempty"`
	HonorLabels    bool           `json:"honor_labels,omitempty"`
}

type tlsConfig struct {
	CAFile     string `json:"ca_file,omitempty"`
	CertFile   string `json:"cert_file,omitempty"`
	KeyFile    string `json:"key_file,omitempty"`
	ServerName string `json:"server_name,omitempty"`
}

type authorization struct {
	CredentialsFile string `json:"credentials_file"`
}

type staticConfig struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels,omitempty"`
}

type kubernetesSD struct {
	Role       string      `json:"role"`
	Namespaces *namespaces `json:"namespaces,omitempty"`
}

type namespaces struct {
	Names []string `json:"names"`
}

type relabel struct {
	SourceLabels []string `json:"source_labels,omitempty"`
	Regex        string   `json:"regex,omitempty"`
	TargetLabel  string   `json:"target_label,omitempty"`
	Replacement  *string  `json:"replacement,omitempty"`
	Action       string   `json:"action,omitempty"`
}

// PrometheusConfig is the scrape configuration: one job per component
// kind, each target labelled with its machine.
func PrometheusConfig(c *components.Cluster) (string, error) {
	saTLS := &tlsConfig{CAFile: saDir + "/ca.crt"}
	token := &authorization{CredentialsFile: saDir + "/token"}
	// The agent's certificate names "kubeup-agent", not each machine's IP.
	agentTLS := &tlsConfig{CAFile: saDir + "/ca.crt", ServerName: "kubeup-agent"}
	masters := func(port int) []staticConfig {
		var out []staticConfig
		for _, m := range c.Masters {
			out = append(out, staticConfig{Targets: []string{fmt.Sprintf("%s:%d", m.IP, port)}, Labels: map[string]string{"machine": m.Name}})
		}
		return out
	}
	// Node-role jobs: one target per Node, at its address and a port.
	nodeRelabel := func(port int) []relabel {
		return []relabel{
			{SourceLabels: []string{"__meta_kubernetes_node_name"}, TargetLabel: "machine"},
			{SourceLabels: []string{"__meta_kubernetes_node_address_InternalIP"}, Regex: "(.+)", TargetLabel: "__address__", Replacement: ptr.To(fmt.Sprintf("${1}:%d", port))},
		}
	}
	jobs := []scrape{
		{JobName: "etcd", Scheme: "https", MetricsPath: "/metrics/etcd", TLSConfig: agentTLS, Authorization: token, StaticConfigs: masters(components.AgentPort)},
		{JobName: "kube-apiserver", Scheme: "https", TLSConfig: saTLS, Authorization: token, StaticConfigs: masters(components.APIServerPort)},
		{JobName: "kube-controller-manager", Scheme: "https", TLSConfig: saTLS, Authorization: token, StaticConfigs: masters(components.ControllerManagerPort)},
		{JobName: "kube-scheduler", Scheme: "https", TLSConfig: saTLS, Authorization: token, StaticConfigs: masters(components.SchedulerPort)},
		{JobName: "kubeup-addon-manager", Scheme: "https", TLSConfig: agentTLS, Authorization: token, StaticConfigs: masters(components.AddonManagerPort)},
		{JobName: "kubelet", Scheme: "https", TLSConfig: saTLS, Authorization: token,
			KubernetesSD: []kubernetesSD{{Role: "node"}}, RelabelConfigs: nodeRelabel(components.KubeletPort)},
		{JobName: "cadvisor", Scheme: "https", MetricsPath: "/metrics/cadvisor", TLSConfig: saTLS, Authorization: token,
			KubernetesSD: []kubernetesSD{{Role: "node"}}, RelabelConfigs: nodeRelabel(components.KubeletPort)},
		{JobName: "kube-proxy", Scheme: "https", MetricsPath: "/metrics/kube-proxy", TLSConfig: agentTLS, Authorization: token,
			KubernetesSD: []kubernetesSD{{Role: "node"}}, RelabelConfigs: nodeRelabel(components.AgentPort)},
		{JobName: "containerd", Scheme: "https", MetricsPath: "/metrics/containerd", TLSConfig: agentTLS, Authorization: token,
			KubernetesSD: []kubernetesSD{{Role: "node"}}, RelabelConfigs: nodeRelabel(components.AgentPort)},
		{JobName: "kubeup-apilb", Scheme: "https", MetricsPath: "/metrics/apilb", TLSConfig: agentTLS, Authorization: token,
			KubernetesSD: []kubernetesSD{{Role: "node"}}, RelabelConfigs: nodeRelabel(components.AgentPort)},
		{JobName: "kubeup-agent", Scheme: "https", TLSConfig: agentTLS, Authorization: token,
			KubernetesSD: []kubernetesSD{{Role: "node"}}, RelabelConfigs: nodeRelabel(components.AgentPort)},
		{JobName: "coredns", KubernetesSD: []kubernetesSD{{Role: "endpoints", Namespaces: &namespaces{Names: []string{Namespace}}}},
			RelabelConfigs: []relabel{
				{SourceLabels: []string{"__meta_kubernetes_service_name", "__meta_kubernetes_endpoint_port_name"}, Regex: "kube-dns;metrics", Action: "keep"},
				{SourceLabels: []string{"__meta_kubernetes_endpoint_node_name"}, TargetLabel: "machine"},
				{SourceLabels: []string{"__meta_kubernetes_pod_name"}, TargetLabel: "pod"},
			}},
		{JobName: "prometheus", StaticConfigs: []staticConfig{{Targets: []string{fmt.Sprintf("localhost:%d", PrometheusPort)}}}},
	}
	if !c.Addons.DNS {
		jobs = dropJob(jobs, "coredns")
	}
	doc := map[string]any{
		"global": map[string]any{
			// Prometheus's own default interval. Every scrape costs the
			// scraped daemon a render of all its series (the API server's
			// are thousands), and a saturated master under emulation (TCG)
			// paid for 30 s with scrapes that no longer finished in time.
			"scrape_interval": "60s",
			// Under TCG a busy master takes more than the default 10 s to
			// render the API server's metrics.
			"scrape_timeout":      "45s",
			"evaluation_interval": "60s",
			"external_labels":     map[string]string{"cluster": c.Name},
		},
		"scrape_configs": jobs,
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	return "# Prometheus configuration, rendered by kubeup.\n" + string(out), nil
}

func dropJob(jobs []scrape, name string) []scrape {
	var out []scrape
	for _, j := range jobs {
		if !strings.EqualFold(j.JobName, name) {
			out = append(out, j)
		}
	}
	return out
}
