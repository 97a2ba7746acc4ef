package addons

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
)

// The logging addon's places and ports.
const (
	LogStoreName      = "victoria-logs"
	LogStorePort      = 9428
	LogStoreDataDir   = "/var/lib/kubeup/victoria-logs"
	LogStoreRetention = "7d"
	// LogStoreMaxDiskUsagePercent makes VictoriaLogs drop its oldest days
	// before the addon machine's disk fills up, whatever the retention.
	LogStoreMaxDiskUsagePercent = 80
	// LogStoreFlushInterval is how long a line VictoriaLogs has stored (and
	// acknowledged to the aggregator, which then forgets it) may live only
	// in its memory: its in-memory parts are written and fsynced at least
	// this often. A hard reset of the addon machine loses at most this much; the
	// minimum VictoriaLogs accepts (its default is 5 s).
	LogStoreFlushInterval = time.Second

	LogAggregatorName = "log-aggregator"
	// LogAggregatorQueueDir holds the aggregator's persistent sending queue:
	// what it acknowledged to the agents but has not yet stored.
	LogAggregatorQueueDir = "/var/lib/kubeup/log-aggregator"
	ForwardPort           = 24224
	OTLPHTTPPort          = 4318
	HealthPort            = 13133
	AggregatorMetricsPort = 8888
)

// LogStreamFields are the fields whose values make a VictoriaLogs log
// stream: one stream per journal unit (source=journal) or per container
// (source=pod) of each machine of each cluster. A record has either unit or
// namespace/pod/container; the missing ones are simply not part of its stream.
var LogStreamFields = []string{"source", "cluster", "machine", "unit", "namespace", "pod", "container"}

// logIgnoredFields are dropped at ingestion: the forward receiver's tag (the
// source field says the same) and what VictoriaLogs' OTLP endpoint adds for
// every record (scope, and severity, which the agents send as priority and
// level instead).
var logIgnoredFields = []string{"fluent.tag", "scope.name", "scope.version", "severity_number", "severity_text"}

// Logging is the logging addon: VictoriaLogs on the addon machine storing every log
// line of the cluster, and an OpenTelemetry Collector (the log aggregator)
// receiving the agents' forward-protocol records on the fixed address
// c.LogForward and writing them to VictoriaLogs over OTLP/HTTP. Both keep
// their data on the addon machine's disk ("persistent enough" for a test
// cluster).
// The aggregator finds VictoriaLogs by its cluster DNS name: the DNS addon
// must be on.
func Logging(c *components.Cluster) (Addon, error) {
	ip, port, err := splitLogForward(c.LogForward)
	if err != nil {
		return Addon{}, err
	}
	cfg, err := AggregatorConfig{
		ForwardListen: net.JoinHostPort("0.0.0.0", strconv.Itoa(port)),
		OTLPListen:    net.JoinHostPort("0.0.0.0", strconv.Itoa(OTLPHTTPPort)),
		HealthListen:  net.JoinHostPort("0.0.0.0", strconv.Itoa(HealthPort)),
		MetricsHost:   "0.0.0.0",
		MetricsPort:   AggregatorMetricsPort,
		LogStoreURL:   fmt.Sprintf("http://%s.%s.svc.%s:%d", LogStoreName, Namespace, c.DNSDomain, LogStorePort),
		QueueDir:      "/var/lib/otelcol/queue",
	}.Render()
	if err != nil {
		return Addon{}, err
	}
	store := logStore(c)
	agg := logAggregator(c, ip, port, cfg)
	return Addon{Name: "logging", Objects: append(store, agg...), PodSecurity: components.PodSecurityPrivileged}, nil
}

// splitLogForward takes "IP:port" apart.
func splitLogForward(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("logging addon: log forward address %q: %w", addr, err)
	}
	if net.ParseIP(host) == nil {
		return "", 0, fmt.Errorf("logging addon: log forward address %q: %q is not an IP address", addr, host)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("logging addon: log forward address %q: bad port", addr)
	}
	return host, port, nil
}

func logStore(c *components.Cluster) []any {
	const app = LogStoreName
	l := labels(app)
	dep := &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: Namespace, Labels: l},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			// One process owns the data directory: never two at once.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": app}},
				Spec: corev1.PodSpec{
					PriorityClassName:            "system-cluster-critical",
					NodeSelector:                 onAddonMachine(c),
					Tolerations:                  pinnedTolerations(),
					AutomountServiceAccountToken: ptr.To(false),
					// Graceful shutdown flushes the in-memory parts to disk.
					TerminationGracePeriodSeconds: ptr.To[int64](30),
					Containers: []corev1.Container{{
						Name:  "victoria-logs",
						Image: c.Images.LogStore,
						Args: []string{
							"-storageDataPath=/victoria-logs-data",
							"-retentionPeriod=" + LogStoreRetention,
							"-retention.maxDiskUsagePercent=" + strconv.Itoa(LogStoreMaxDiskUsagePercent),
							"-inmemoryDataFlushInterval=" + LogStoreFlushInterval.String(),
							"-httpListenAddr=:" + strconv.Itoa(LogStorePort),
							"-loggerFormat=json",
						},
						Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: LogStorePort}},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(LogStorePort)}},
							PeriodSeconds: 5, TimeoutSeconds: 5,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/health", Port: intstr.FromInt32(LogStorePort)}},
							InitialDelaySeconds: 60, PeriodSeconds: 15, TimeoutSeconds: 10, FailureThreshold: 6,
						},
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
						},
						SecurityContext: hostPathWriter(),
						VolumeMounts:    []corev1.VolumeMount{{Name: "data", MountPath: "/victoria-logs-data"}},
					}},
					Volumes: []corev1.Volume{hostPathVolume("data", LogStoreDataDir)},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta:   tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: Namespace, Labels: l},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"k8s-app": app},
			Ports:    []corev1.ServicePort{{Name: "http", Port: LogStorePort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("http")}},
		},
	}
	return []any{dep, svc}
}

func logAggregator(c *components.Cluster, ip string, port int, cfg string) []any {
	const app = LogAggregatorName
	l := labels(app)
	meta := metav1.ObjectMeta{Name: app, Namespace: Namespace, Labels: l}
	cm := &corev1.ConfigMap{TypeMeta: tm("v1", "ConfigMap"), ObjectMeta: meta, Data: map[string]string{"config.yaml": cfg}}
	dep := &appsv1.Deployment{
		TypeMeta:   tm("apps/v1", "Deployment"),
		ObjectMeta: meta,
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			// The persistent queue is one process's file.
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"k8s-app": app}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"k8s-app": app},
					// Restart on a config change (the collector does not reload).
					Annotations: map[string]string{"kubeup.dev/config-hash": shortHash(cfg)}},
				Spec: corev1.PodSpec{
					PriorityClassName:            "system-cluster-critical",
					NodeSelector:                 onAddonMachine(c),
					Tolerations:                  pinnedTolerations(),
					AutomountServiceAccountToken: ptr.To(false),
					Containers: []corev1.Container{{
						Name:  "otelcol",
						Image: c.Images.LogAggregator,
						Args:  []string{"--config=/etc/otelcol/config.yaml"},
						Ports: []corev1.ContainerPort{
							{Name: "forward", ContainerPort: int32(port), Protocol: corev1.ProtocolTCP},
							{Name: "otlp-http", ContainerPort: OTLPHTTPPort, Protocol: corev1.ProtocolTCP},
							{Name: "health", ContainerPort: HealthPort, Protocol: corev1.ProtocolTCP},
							{Name: "metrics", ContainerPort: AggregatorMetricsPort, Protocol: corev1.ProtocolTCP},
						},
						ReadinessProbe: &corev1.Probe{
							ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("health")}},
							PeriodSeconds: 5, TimeoutSeconds: 5,
						},
						LivenessProbe: &corev1.Probe{
							ProbeHandler:        corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromString("health")}},
							InitialDelaySeconds: 30, PeriodSeconds: 15, TimeoutSeconds: 10, FailureThreshold: 6,
						},
						// memory_limiter works in percent of this limit.
						Resources: corev1.ResourceRequirements{
							Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
							Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
						},
						SecurityContext: hostPathWriter(),
						VolumeMounts: []corev1.VolumeMount{
							{Name: "config", MountPath: "/etc/otelcol", ReadOnly: true},
							{Name: "queue", MountPath: "/var/lib/otelcol/queue"},
						},
					}},
					Volumes: []corev1.Volume{
						{Name: "config", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
							LocalObjectReference: corev1.LocalObjectReference{Name: app}}}},
						hostPathVolume("queue", LogAggregatorQueueDir),
					},
				},
			},
		},
	}
	svc := &corev1.Service{
		TypeMeta: tm("v1", "Service"),
		ObjectMeta: metav1.ObjectMeta{Name: app, Namespace: Namespace, Labels: l,
			Annotations: map[string]string{"prometheus.io/port": strconv.Itoa(AggregatorMetricsPort), "prometheus.io/scrape": "true"}},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"k8s-app": app},
			// The agents run on the host network without cluster DNS: they
			// send to this fixed address (components.Cluster.LogForward).
			ClusterIP: ip,
			Ports: []corev1.ServicePort{
				{Name: "forward", Port: int32(port), Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("forward")},
				{Name: "otlp-http", Port: OTLPHTTPPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("otlp-http")},
				{Name: "metrics", Port: AggregatorMetricsPort, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromString("metrics")},
			},
		},
	}
	return []any{cm, dep, svc}
}

// hostPathWriter runs a container as root without capabilities: the
// kubelet creates hostPath directories root-owned 0755, which root may
// write without CAP_DAC_OVERRIDE, and nothing else in the image needs root.
func hostPathWriter() *corev1.SecurityContext {
	return &corev1.SecurityContext{
		RunAsUser: ptr.To[int64](0), RunAsGroup: ptr.To[int64](0), RunAsNonRoot: ptr.To(false),
		AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
		Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
	}
}

func hostPathVolume(name, path string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{
		HostPath: &corev1.HostPathVolumeSource{Path: path, Type: ptr.To(corev1.HostPathDirectoryOrCreate)}}}
}

// AggregatorConfig are the addresses of the log aggregator's configuration.
// The addon listens on all addresses of its pod; tests run the same
// configuration on loopback.
type AggregatorConfig struct {
	ForwardListen string // forward protocol (the agents)
	OTLPListen    string // OTLP/HTTP, for programs that log over OTLP
	HealthListen  string // health_check: 200 when the pipeline runs
	MetricsHost   string // the collector's own metrics (Prometheus format)
	MetricsPort   int
	// LogStoreURL is VictoriaLogs' base URL (http://host:9428).
	LogStoreURL string
	// QueueDir holds the persistent sending queue.
	QueueDir string
}

// Render is the collector's YAML configuration.
//
// Records reach VictoriaLogs through its OTLP endpoint: the forward
// receiver puts the record's "message" into the log body (VictoriaLogs'
// _msg), the event time into the timestamp (_time), and every other key
// into an attribute (a field of the same name, queryable). Headers tell
// VictoriaLogs the stream fields and what to drop.
//
// Acknowledgements: the forward receiver answers a chunk's ack when the
// pipeline accepted it. There is no batch processor (it would accept into
// memory); the exporter's sending queue is persistent (file_storage, fsync),
// so an ack means "on the addon machine's disk". While VictoriaLogs is down the
// queue holds the records and retries without end; when the queue is full
// the receiver refuses, the agent gets no ack and keeps its own buffer.
func (a AggregatorConfig) Render() (string, error) {
	const storage = "file_storage/queue"
	doc := map[string]any{
		"extensions": map[string]any{
			"health_check": map[string]any{"endpoint": a.HealthListen},
			storage: map[string]any{
				"directory": a.QueueDir, "create_directory": true, "fsync": true,
				"compaction": map[string]any{"on_start": true, "on_rebound": true, "directory": a.QueueDir},
			},
		},
		"receivers": map[string]any{
			"fluent_forward": map[string]any{"endpoint": a.ForwardListen},
			"otlp":           map[string]any{"protocols": map[string]any{"http": map[string]any{"endpoint": a.OTLPListen}}},
		},
		"processors": map[string]any{
			// Refuse (no ack) rather than be OOM-killed under a burst.
			"memory_limiter": map[string]any{"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 20},
		},
		"exporters": map[string]any{
			"otlp_http/victoria-logs": map[string]any{
				"logs_endpoint": strings.TrimSuffix(a.LogStoreURL, "/") + "/insert/opentelemetry/v1/logs",
				"compression":   "gzip",
				"headers": map[string]any{
					"VL-Stream-Fields": strings.Join(LogStreamFields, ","),
					"VL-Ignore-Fields": strings.Join(logIgnoredFields, ","),
				},
				// A write VictoriaLogs answers after the timeout is stored
				// and then sent again: under TCG a loaded master took longer
				// than 10 s, and a 1000-line batch was stored twice.
				"timeout": "60s",
				// Retry until VictoriaLogs is back: the queue is on disk.
				"retry_on_failure": map[string]any{"enabled": true, "initial_interval": "1s", "max_interval": "30s", "max_elapsed_time": "0s"},
				"sending_queue": map[string]any{
					"enabled": true, "storage": storage, "num_consumers": 2,
					"sizer": "requests", "queue_size": 20000,
					"batch": map[string]any{"sizer": "items", "flush_timeout": "1s", "min_size": 1000, "max_size": 10000},
				},
			},
		},
		"service": map[string]any{
			"extensions": []string{"health_check", storage},
			"pipelines": map[string]any{
				"logs": map[string]any{
					"receivers":  []string{"fluent_forward", "otlp"},
					"processors": []string{"memory_limiter"},
					"exporters":  []string{"otlp_http/victoria-logs"},
				},
			},
			"telemetry": map[string]any{
				"logs": map[string]any{"level": "info", "encoding": "json"},
				"metrics": map[string]any{"level": "normal", "readers": []any{map[string]any{
					"pull": map[string]any{"exporter": map[string]any{"prometheus": map[string]any{
						"host": a.MetricsHost, "port": a.MetricsPort}}},
				}}},
			},
		},
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("render log aggregator config: %w", err)
	}
	return string(out), nil
}

// shortHash identifies a configuration in a pod annotation.
func shortHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:8])
}
