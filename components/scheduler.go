package components

import (
	"fmt"
	"maps"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	schedv1 "k8s.io/kube-scheduler/config/v1"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/systemd"
)

// Scheduler is kube-scheduler, configured by a KubeSchedulerConfiguration file.
type Scheduler struct{}

// Scheduler port and files.
const (
	SchedulerPort       = 10259
	SchedulerConfigPath = KubernetesDir + "/scheduler.yaml"
)

func (Scheduler) Name() string        { return "kube-scheduler" }
func (Scheduler) Description() string { return "Kubernetes scheduler" }
func (Scheduler) Roles() []Role       { return []Role{Master} }

func (c Scheduler) Unit(role Role) systemd.Unit {
	s := systemd.Service{
		Documentation:   []string{"https://kubernetes.io/docs/reference/command-line-tools-reference/kube-scheduler/"},
		Wants:           []string{"kube-apiserver.service"},
		After:           []string{"kube-apiserver.service"},
		ExecStartPost:   []string{probe(c.Health(), "--cacert="+pki("ca.crt"))},
		TimeoutStartSec: probedStartTimeout,
		Environment:     oneProcessor(),
	}
	controlPlaneHardening(&s)
	inControlPlane(&s)
	return service(c, role, BinDir+"/kube-scheduler", s)
}

func (Scheduler) ImageFiles() []File { return nil }

func (Scheduler) Flags(Context) Flags {
	f := Flags{
		"config":                       SchedulerConfigPath,
		"authentication-kubeconfig":    SchedulerKubeconfig,
		"authorization-kubeconfig":     SchedulerKubeconfig,
		"bind-address":                 "0.0.0.0",
		"secure-port":                  fmt.Sprint(SchedulerPort),
		"tls-cert-file":                pki("scheduler.crt"),
		"tls-private-key-file":         pki("scheduler.key"),
		"client-ca-file":               pki("ca.crt"),
		"requestheader-client-ca-file": pki("front-proxy-ca.crt"),
		"disabled-metrics":             featureEnabledMetric,
	}
	maps.Copy(f, tlsFlags())
	return f
}

func (Scheduler) Files(ctx Context) ([]File, error) {
	kc, err := certKubeconfig(ctx.Cluster.Name, localAPIServer(), "system:kube-scheduler",
		pki("scheduler-client.crt"), pki("scheduler-client.key"))
	if err != nil {
		return nil, err
	}
	cfg := schedv1.KubeSchedulerConfiguration{}
	cfg.APIVersion, cfg.Kind = "kubescheduler.config.k8s.io/v1", "KubeSchedulerConfiguration"
	cfg.ClientConnection.Kubeconfig = SchedulerKubeconfig
	// No /debug/pprof (CIS 1.4.1): with --config, the --profiling flag is
	// ignored and this is the setting.
	cfg.EnableProfiling, cfg.EnableContentionProfiling = ptr.To(false), ptr.To(false)
	cfg.LeaderElection.LeaderElect = ptr.To(ctx.Cluster.leaderElect())
	if ctx.Cluster.leaderElect() {
		cfg.LeaderElection.LeaseDuration = metav1.Duration{Duration: leaseDuration}
		cfg.LeaderElection.RenewDeadline = metav1.Duration{Duration: renewDeadline}
		cfg.LeaderElection.RetryPeriod = metav1.Duration{Duration: retryPeriod}
	}
	conf, err := marshalConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube-scheduler config: %w", err)
	}
	return []File{
		{Path: SchedulerKubeconfig, Mode: 0o600, Content: kc},
		{Path: SchedulerConfigPath, Mode: 0o644, Content: conf},
	}, nil
}

func (Scheduler) Health() Endpoint {
	return Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/healthz", SchedulerPort), Auth: AuthNone}
}

func (Scheduler) Metrics() *Endpoint {
	return &Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/metrics", SchedulerPort), Auth: AuthBearer}
}

func (Scheduler) Certificates(Role) []string {
	return []string{"kubernetes-ca", "front-proxy-ca", "scheduler-client", "scheduler-server"}
}
