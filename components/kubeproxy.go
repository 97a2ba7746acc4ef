package components

import (
	"fmt"
	"time"

	kubeproxyv1alpha1 "k8s.io/kube-proxy/config/v1alpha1"

	"kubeup.dev/kubeup/systemd"
)

// KubeProxy programs Services into iptables on every machine.
type KubeProxy struct{}

// kube-proxy paths and addresses. Its metrics and health servers speak only
// plain HTTP, so they listen on loopback; the node agent serves the metrics
// onwards over TLS.
const (
	KubeProxyConfigPath  = "/var/lib/kube-proxy/config.yaml"
	KubeProxyMetricsAddr = "127.0.0.1:10249"
	KubeProxyHealthzAddr = "127.0.0.1:10256"
)

func (KubeProxy) Name() string        { return "kube-proxy" }
func (KubeProxy) Description() string { return "Kubernetes network proxy (kube-proxy)" }
func (KubeProxy) Roles() []Role       { return []Role{Master, Node} }

func (k KubeProxy) Unit(role Role) systemd.Unit {
	return service(k, role, BinDir+"/kube-proxy", systemd.Service{
		Documentation: []string{"https://kubernetes.io/docs/reference/command-line-tools-reference/kube-proxy/"},
		// kube-proxy reads its Node's IPs once at start (waiting 30 s at
		// most) and exits when they change; started before the kubelet has
		// registered the Node (TLS bootstrapping takes longer than that on
		// a slow machine), it would run without them and restart itself
		// when the Node appears. So it starts once its Node has an address.
		ExecStartPre:    []string{ProbeBinary + " wait --node-of=" + AgentConfigPath + " --timeout=10m"},
		TimeoutStartSec: 11 * time.Minute,
		Environment:     oneProcessor(),
	})
}

func (KubeProxy) ImageFiles() []File { return nil }

func (KubeProxy) Flags(ctx Context) Flags {
	return Flags{
		"config":            KubeProxyConfigPath,
		"hostname-override": ctx.Machine.Name,
	}
}

func (KubeProxy) Files(ctx Context) ([]File, error) {
	c := ctx.Cluster
	kc, err := certKubeconfig(c.Name, MachineAPIServer(), "system:kube-proxy", pki("kube-proxy-client.crt"), pki("kube-proxy-client.key"))
	if err != nil {
		return nil, err
	}
	cfg := kubeproxyv1alpha1.KubeProxyConfiguration{
		Mode:               "iptables",
		ClusterCIDR:        c.PodCIDR.String(),
		MetricsBindAddress: KubeProxyMetricsAddr,
		HealthzBindAddress: KubeProxyHealthzAddr,
	}
	cfg.APIVersion, cfg.Kind = "kubeproxy.config.k8s.io/v1alpha1", "KubeProxyConfiguration"
	cfg.ClientConnection.Kubeconfig = KubeProxyKubeconfig
	conf, err := marshalConfig(cfg, "logging")
	if err != nil {
		return nil, fmt.Errorf("kube-proxy config: %w", err)
	}
	return []File{
		{Path: KubeProxyKubeconfig, Mode: 0o600, Content: kc},
		{Path: KubeProxyConfigPath, Mode: 0o644, Content: conf},
	}, nil
}

func (KubeProxy) Health() Endpoint {
	return Endpoint{URL: "http://" + KubeProxyHealthzAddr + "/healthz", Auth: AuthNone}
}

func (KubeProxy) Metrics() *Endpoint {
	return &Endpoint{URL: "http://" + KubeProxyMetricsAddr + "/metrics", Auth: AuthNone}
}

func (KubeProxy) Certificates(Role) []string { return []string{"kubernetes-ca", "kube-proxy"} }
