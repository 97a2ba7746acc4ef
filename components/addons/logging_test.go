package addons

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/test/golden"
)

func loggingCluster() *components.Cluster {
	c := cluster()
	c.Addons.Logging = true
	c.LogForward = "10.96.0.11:24224"
	c.Images.LogStore = "registry.kubeup.dev/victoria-logs:v1.52.1"
	c.Images.LogAggregator = "registry.kubeup.dev/otelcol:v0.165.1"
	return c
}

func TestLoggingGolden(t *testing.T) {
	a, err := Logging(loggingCluster())
	if err != nil {
		t.Fatal(err)
	}
	finish(a.Objects) // as Enabled does
	data, err := marshal(a.Objects)
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "logging", data)
}

// Every document decodes strictly into its type, carries the addon
// manager's label, and the pieces fit: the aggregator's Service is at the
// agents' address, both pods are pinned to the addon machine.
func TestLoggingObjects(t *testing.T) {
	a, err := Logging(loggingCluster())
	if err != nil {
		t.Fatal(err)
	}
	data, err := marshal(a.Objects)
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]*corev1.Service{}
	deployments := map[string]*appsv1.Deployment{}
	var cm *corev1.ConfigMap
	for _, doc := range bytes.Split(data, []byte("\n---\n")) {
		var head struct {
			Kind     string `json:"kind"`
			Metadata struct {
				Labels map[string]string `json:"labels"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		if head.Metadata.Labels[components.AddonModeLabel] != components.AddonModeReconcile {
			t.Errorf("%s lacks the addon manager label", head.Kind)
		}
		var obj interface{ GetName() string }
		switch head.Kind {
		case "Service":
			obj = &corev1.Service{}
		case "Deployment":
			obj = &appsv1.Deployment{}
		case "ConfigMap":
			cm = &corev1.ConfigMap{}
			obj = cm
		default:
			t.Fatalf("unexpected kind %q", head.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			t.Errorf("%s: %v", head.Kind, err)
		}
		switch o := obj.(type) {
		case *corev1.Service:
			services[o.Name] = o
		case *appsv1.Deployment:
			deployments[o.Name] = o
		}
	}
	agg := services[LogAggregatorName]
	if agg == nil || agg.Spec.ClusterIP != "10.96.0.11" || agg.Spec.Ports[0].Port != 24224 {
		t.Errorf("aggregator service %+v", agg)
	}
	if s := services[LogStoreName]; s == nil || s.Spec.Ports[0].Name != "http" || s.Spec.Ports[0].Port != 9428 {
		t.Errorf("victoria-logs service %+v", s)
	}
	for _, n := range []string{LogStoreName, LogAggregatorName} {
		d := deployments[n]
		if d == nil {
			t.Fatalf("no deployment %s", n)
		}
		spec := d.Spec.Template.Spec
		if spec.NodeSelector[corev1.LabelHostname] != "node-0" || *d.Spec.Replicas != 1 {
			t.Errorf("%s: not one replica on the addon machine node-0: %v", n, spec.NodeSelector)
		}
		if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool { return t.Key == components.ControlPlaneTaint }) {
			t.Errorf("%s does not tolerate the masters' taint", n)
		}
		if spec.Containers[0].ReadinessProbe == nil {
			t.Errorf("%s has no readiness probe", n)
		}
	}
	if img := deployments[LogStoreName].Spec.Template.Spec.Containers[0].Image; img != "registry.kubeup.dev/victoria-logs:v1.52.1" {
		t.Errorf("log store image %q", img)
	}
	if img := deployments[LogAggregatorName].Spec.Template.Spec.Containers[0].Image; img != "registry.kubeup.dev/otelcol:v0.165.1" {
		t.Errorf("aggregator image %q", img)
	}
	if cm == nil || !strings.Contains(cm.Data["config.yaml"], "http://victoria-logs.kube-system.svc.cluster.local:9428/insert/opentelemetry/v1/logs") {
		t.Errorf("config map %+v", cm)
	}
}

func TestAggregatorConfig(t *testing.T) {
	cfg, err := AggregatorConfig{
		ForwardListen: "127.0.0.1:1", OTLPListen: "127.0.0.1:2", HealthListen: "127.0.0.1:3",
		MetricsHost: "127.0.0.1", MetricsPort: 4, LogStoreURL: "http://127.0.0.1:5/", QueueDir: "/q",
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Service struct {
			Pipelines map[string]struct {
				Receivers, Processors, Exporters []string
			}
		}
		Exporters map[string]struct {
			LogsEndpoint string            `json:"logs_endpoint"`
			Headers      map[string]string `json:"headers"`
			SendingQueue struct {
				Storage string `json:"storage"`
			} `json:"sending_queue"`
		}
	}
	if err := yaml.Unmarshal([]byte(cfg), &doc); err != nil {
		t.Fatal(err)
	}
	logs := doc.Service.Pipelines["logs"]
	// A batch processor would ack records before they are on disk.
	if slices.Contains(logs.Processors, "batch") {
		t.Error("the logs pipeline has a batch processor")
	}
	exp := doc.Exporters["otlp_http/victoria-logs"]
	if exp.LogsEndpoint != "http://127.0.0.1:5/insert/opentelemetry/v1/logs" || exp.SendingQueue.Storage != "file_storage/queue" {
		t.Errorf("exporter %+v", exp)
	}
	if exp.Headers["VL-Stream-Fields"] != "source,cluster,machine,unit,namespace,pod,container" {
		t.Errorf("stream fields %q", exp.Headers["VL-Stream-Fields"])
	}
}

func TestLoggingRejectsBadForwardAddress(t *testing.T) {
	for _, addr := range []string{"", "10.96.0.11", "log-aggregator:24224", "10.96.0.11:0"} {
		c := loggingCluster()
		c.LogForward = addr
		if _, err := Logging(c); err == nil {
			t.Errorf("accepted %q", addr)
		}
	}
}
