package addons

import (
	"bytes"
	"maps"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/test/golden"
)

func cluster() *components.Cluster {
	return &components.Cluster{
		Name: "demo", DNSDomain: "cluster.local", DNSServiceIP: netip.MustParseAddr("10.96.0.10"),
		Images:       components.Images{CoreDNS: "registry.kubeup.dev/coredns:v1.15.0"},
		Addons:       components.Addons{DNS: true},
		AddonMachine: "node-0",
		PodSecurity:  components.PodSecurity{Enforce: components.PodSecurityBaseline, Audit: components.PodSecurityRestricted, Warn: components.PodSecurityRestricted},
	}
}

func TestManifestsGolden(t *testing.T) {
	files, err := Manifests(cluster())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || files[0].Path != "/etc/kubeup/addons/dns.yaml" || files[1].Path != "/etc/kubeup/addons/namespace.yaml" {
		t.Fatalf("files %+v", files)
	}
	for _, f := range files {
		golden.Assert(t, strings.TrimSuffix(f.Path[strings.LastIndex(f.Path, "/")+1:], ".yaml"), f.Content)
	}
}

// Every document decodes strictly into its Kubernetes type and carries the
// addon manager's label.
func TestManifestsAreValidObjects(t *testing.T) {
	files, err := Manifests(cluster())
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]func() any{
		"ServiceAccount": func() any { return &corev1.ServiceAccount{} }, "ConfigMap": func() any { return &corev1.ConfigMap{} },
		"Service": func() any { return &corev1.Service{} }, "Deployment": func() any { return &appsv1.Deployment{} },
		"ClusterRole": func() any { return &rbacv1.ClusterRole{} }, "ClusterRoleBinding": func() any { return &rbacv1.ClusterRoleBinding{} },
		"Namespace": func() any { return &corev1.Namespace{} },
	}
	for _, f := range files {
		for _, doc := range bytes.Split(f.Content, []byte("\n---\n")) {
			var head struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Labels map[string]string `json:"labels"`
				} `json:"metadata"`
			}
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatal(err)
			}
			mk, ok := types[head.Kind]
			if !ok {
				t.Fatalf("unexpected kind %q", head.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, mk()); err != nil {
				t.Errorf("%s: %v", head.Kind, err)
			}
			if head.Metadata.Labels[components.AddonModeLabel] != components.AddonModeReconcile {
				t.Errorf("%s lacks the addon manager label", head.Kind)
			}
		}
	}
}

func TestCorefileForwardsOnlyWithUpstream(t *testing.T) {
	c := cluster()
	if strings.Contains(Corefile(c), "forward") {
		t.Error("air-gapped Corefile forwards")
	}
	c.UpstreamDNS = true
	if !strings.Contains(Corefile(c), "forward . /etc/resolv.conf") {
		t.Error("Corefile with upstream does not forward")
	}
	c.Addons.DNS = false
	if files, _ := Manifests(c); len(files) != 1 || files[0].Path != "/etc/kubeup/addons/namespace.yaml" {
		t.Errorf("DNS addon rendered while off: %v", files)
	}
}

func TestMonitoring(t *testing.T) {
	c := cluster()
	c.Addons.Monitoring = true
	c.Masters = []components.Machine{{Name: "master-0", Role: components.Master, IP: netip.MustParseAddr("10.77.0.10")}}
	c.Images.Prometheus, c.Images.Testbox = "registry.kubeup.dev/prometheus:v3", "registry.kubeup.dev/testbox:1"
	files, err := Manifests(c)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 3 || files[1].Path != "/etc/kubeup/addons/monitoring.yaml" {
		t.Fatalf("files %v", files)
	}
	golden.Assert(t, "monitoring", files[1].Content)
	cfg, err := PrometheusConfig(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, job := range []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "cadvisor",
		"kube-proxy", "containerd", "kubeup-agent", "kubeup-addon-manager", "coredns"} {
		if !strings.Contains(cfg, "job_name: "+job+"\n") {
			t.Errorf("no scrape job %s", job)
		}
	}
	if !strings.Contains(cfg, "10.77.0.10:10290") || !strings.Contains(cfg, "/metrics/etcd") || !strings.Contains(cfg, "server_name: kubeup-agent") {
		t.Errorf("config:\n%s", cfg)
	}
}

// everyAddon is a cluster with every addon enabled.
func everyAddon() *components.Cluster {
	c := cluster()
	c.Addons = components.Addons{DNS: true, Monitoring: true, Logging: true, UI: true}
	c.Masters = []components.Machine{{Name: "master-0", Role: components.Master, IP: netip.MustParseAddr("10.77.0.10")}}
	c.ServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")
	c.LogForward = "10.96.0.11:24224"
	return c
}

func TestWorkloads(t *testing.T) {
	t.Parallel()
	c := everyAddon()
	got, err := Workloads(c)
	if err != nil {
		t.Fatal(err)
	}
	want := "coredns,prometheus,victoria-logs,log-aggregator,kubeup-ui"
	if strings.Join(got, ",") != want {
		t.Errorf("workloads %v, want %s", got, want)
	}
	c.Addons = components.Addons{DNS: true}
	if got, _ := Workloads(c); strings.Join(got, ",") != "coredns" {
		t.Errorf("DNS only: workloads %v", got)
	}
}

// An addon pinned to a machine (its data is a hostPath there) or to masters
// (the UI) is not evicted when that machine is slow to report: eviction
// cannot move it anywhere else.
func TestPinnedAddonsStayThroughNotReady(t *testing.T) {
	t.Parallel()
	pinned := 0
	for _, d := range everyDeployment(t) {
		spec := d.Spec.Template.Spec
		_, onMasters := spec.NodeSelector[components.ControlPlaneTaint]
		onMachine := spec.NodeSelector[corev1.LabelHostname] == "node-0"
		stays := map[string]bool{}
		for _, tol := range spec.Tolerations {
			if tol.Effect == corev1.TaintEffectNoExecute && tol.Operator == corev1.TolerationOpExists && tol.TolerationSeconds == nil {
				stays[tol.Key] = true
			}
		}
		got := stays["node.kubernetes.io/not-ready"] && stays["node.kubernetes.io/unreachable"]
		if got != (onMasters || onMachine) {
			t.Errorf("%s: pinned to masters %v or the addon machine %v, stays through NotReady %v", d.Name, onMasters, onMachine, got)
		}
		if onMasters || onMachine {
			pinned++
		}
	}
	if pinned != 4 {
		t.Errorf("%d addon Deployments pinned, want 4 (prometheus, victoria-logs, log-aggregator, kubeup-ui)", pinned)
	}
}

// The addons with data run on the cluster's addon machine; the UI (its
// image is only in master images) on masters; without an addon machine (a
// config rendered before it existed) everything pinned stays on masters.
func TestAddonPlacement(t *testing.T) {
	t.Parallel()
	for _, machine := range []string{"node-0", ""} {
		c := everyAddon()
		c.AddonMachine = machine
		enabled, err := Enabled(c)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]map[string]string{}
		for _, a := range enabled {
			for _, o := range a.Objects {
				if d, ok := o.(*appsv1.Deployment); ok {
					got[d.Name] = d.Spec.Template.Spec.NodeSelector
				}
			}
		}
		for _, n := range []string{"prometheus", LogStoreName, LogAggregatorName} {
			want := map[string]string{corev1.LabelHostname: machine}
			if machine == "" {
				want = map[string]string{components.ControlPlaneTaint: ""}
			}
			if !maps.Equal(got[n], want) {
				t.Errorf("addon machine %q: %s node selector %v, want %v", machine, n, got[n], want)
			}
		}
		if _, ok := got[UIName][components.ControlPlaneTaint]; !ok {
			t.Errorf("addon machine %q: the UI is not on masters: %v", machine, got[UIName])
		}
	}
}

// CoreDNS tolerates the masters' taint only in a cluster without nodes.
func TestDNSPlacement(t *testing.T) {
	t.Parallel()
	for machine, onMasters := range map[string]bool{"node-0": false, "master-0": true, "": true} {
		c := everyAddon()
		c.AddonMachine = machine
		var tolerates bool
		for _, o := range DNS(c).Objects {
			if d, ok := o.(*appsv1.Deployment); ok {
				for _, tl := range d.Spec.Template.Spec.Tolerations {
					tolerates = tolerates || tl.Key == components.ControlPlaneTaint && (tl.Effect == "" || tl.Effect == corev1.TaintEffectNoSchedule) || tl.Key == "" && tl.Operator == corev1.TolerationOpExists
				}
			}
		}
		if tolerates != onMasters {
			t.Errorf("addon machine %q: CoreDNS tolerates the masters' taint: %v, want %v", machine, tolerates, onMasters)
		}
	}
}

// Every addon container that has a liveness probe waits for its start
// with a startup probe on the same check (20 minutes), and its liveness
// probe has no initial delay of its own.
func TestAddonsStartBeforeLiveness(t *testing.T) {
	t.Parallel()
	live := 0
	for _, d := range everyDeployment(t) {
		for _, c := range d.Spec.Template.Spec.Containers {
			if c.LivenessProbe == nil {
				continue
			}
			live++
			s := c.StartupProbe
			switch {
			case s == nil:
				t.Errorf("%s/%s: liveness probe without a startup probe", d.Name, c.Name)
			case !reflect.DeepEqual(s.ProbeHandler, c.LivenessProbe.ProbeHandler):
				t.Errorf("%s/%s: startup probe %+v checks something else than liveness %+v", d.Name, c.Name, s.ProbeHandler, c.LivenessProbe.ProbeHandler)
			case int(s.PeriodSeconds)*int(s.FailureThreshold) < 15*60:
				t.Errorf("%s/%s: startup window %ds", d.Name, c.Name, s.PeriodSeconds*s.FailureThreshold)
			case c.LivenessProbe.InitialDelaySeconds != 0:
				t.Errorf("%s/%s: liveness initial delay %ds", d.Name, c.Name, c.LivenessProbe.InitialDelaySeconds)
			}
		}
	}
	if live < 4 { // CoreDNS, Prometheus, VictoriaLogs, the aggregator, the UI
		t.Errorf("%d containers with liveness probes, want at least 4", live)
	}
}

// everyDeployment lists the Deployments of every addon, as Enabled renders
// them.
func everyDeployment(t *testing.T) []*appsv1.Deployment {
	t.Helper()
	enabled, err := Enabled(everyAddon())
	if err != nil {
		t.Fatal(err)
	}
	var out []*appsv1.Deployment
	for _, a := range enabled {
		for _, o := range a.Objects {
			if d, ok := o.(*appsv1.Deployment); ok {
				out = append(out, d)
			}
		}
	}
	return out
}

// Every addon container runs its Go runtime with one P.
func TestAddonsOneProcessor(t *testing.T) {
	t.Parallel()
	n := 0
	for _, d := range everyDeployment(t) {
		for _, c := range d.Spec.Template.Spec.Containers {
			n++
			var got []string
			for _, e := range c.Env {
				if e.Name == "GOMAXPROCS" {
					got = append(got, e.Value)
				}
			}
			if len(got) != 1 || got[0] != "1" {
				t.Errorf("%s/%s: GOMAXPROCS %q, want once 1", d.Name, c.Name, got)
			}
		}
	}
	if n < 5 {
		t.Errorf("%d addon containers, want at least 5", n)
	}
}
