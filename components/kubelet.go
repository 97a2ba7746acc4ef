package components

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kubeletv1beta1 "k8s.io/kubelet/config/v1beta1"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/systemd"
)

// Kubelet runs pods. Masters run one too, registered with the control-plane
// NoSchedule taint so only addons that tolerate it land there. Masters get
// their kubelet certificates from kubeup's PKI; nodes join by TLS
// bootstrapping with a bootstrap token, so their user-data carries no
// per-node certificate.
type Kubelet struct{}

// Kubelet paths and ports.
const (
	KubeletConfigPath   = "/var/lib/kubelet/config.yaml"
	KubeletCertDir      = "/var/lib/kubelet/pki"
	StaticPodDir        = KubernetesDir + "/manifests"
	KubeletPort         = 10250
	KubeletHealthzPort  = 10248
	ControlPlaneTaint   = "node-role.kubernetes.io/control-plane"
	RoleLabel           = "kubeup.dev/role"
	systemdResolvConf   = "/run/systemd/resolve/resolv.conf"
	kubeletWatchdogSecs = 120
	kubeletEventQPS     = 50
	kubeletEventBurst   = 100
	kubeletMaxPods      = 110
	kubeletPodPidsLimit = 4096
)

func (Kubelet) Name() string        { return "kubelet" }
func (Kubelet) Description() string { return "Kubernetes node agent (kubelet)" }
func (Kubelet) Roles() []Role       { return []Role{Master, Node} }

// Unit: the kubelet sends READY=1, and pings systemd's watchdog while its
// own health check passes.
//
// On a master the kubelet starts once the local API server is ready (its
// unit is only started when its readiness probe passed): before that it
// could only retry its registration and its pods' status against a server
// that needs the CPU to start, and the pods it runs there are the addons,
// which need the API server anyway.
func (k Kubelet) Unit(role Role) systemd.Unit {
	after := []string{"containerd.service"}
	if role == Master {
		after = append(after, "kube-apiserver.service")
	}
	s := systemd.Service{
		Documentation:   []string{"https://kubernetes.io/docs/reference/command-line-tools-reference/kubelet/"},
		Wants:           []string{"containerd.service"},
		After:           after,
		Type:            "notify",
		WatchdogSec:     kubeletWatchdogSecs * time.Second,
		TimeoutStartSec: 5 * time.Minute,
		Environment:     oneProcessor(),
	}
	if role == Master {
		inControlPlane(&s)
	}
	return service(k, role, BinDir+"/kubelet", s)
}

// KubeletKernelTunables are the sysctls the kubelet checks at start with
// protectKernelDefaults (setupKernelTunables in its container manager):
// overcommit always (the kubelet's memory accounting, not the kernel's
// heuristics, decides), the OOM killer rather than a panic on OOM, and a
// reboot 10 s after a panic, which an oops causes.
func KubeletKernelTunables() [][2]string {
	return [][2]string{
		{"vm.overcommit_memory", "1"},
		{"vm.panic_on_oom", "0"},
		{"kernel.panic", "10"},
		{"kernel.panic_on_oops", "1"},
		{"kernel.keys.root_maxkeys", "1000000"},
		{"kernel.keys.root_maxbytes", "25000000"},
	}
}

// ImageFiles are the kernel tunables the kubelet insists on.
func (Kubelet) ImageFiles() []File {
	var b strings.Builder
	b.WriteString("# Set at boot for the kubelet, which refuses to start without them (protectKernelDefaults).\n")
	for _, t := range KubeletKernelTunables() {
		b.WriteString(t[0] + " = " + t[1] + "\n")
	}
	return []File{{Path: "/etc/sysctl.d/90-kubelet.conf", Mode: 0o644, Content: []byte(b.String())}}
}

func (Kubelet) Flags(ctx Context) Flags {
	m := ctx.Machine
	f := Flags{
		"config":            KubeletConfigPath,
		"kubeconfig":        KubeletKubeconfig,
		"cert-dir":          KubeletCertDir,
		"node-ip":           m.IP.String(),
		"hostname-override": m.Name,
		// node-role.kubernetes.io/* labels are refused to kubelets by the
		// NodeRestriction admission plugin; kubeup's own label is not.
		"node-labels": RoleLabel + "=" + string(m.Role),
	}
	if m.Role == Node {
		f["bootstrap-kubeconfig"] = BootstrapKubeconfig
	}
	return f
}

// Files are the KubeletConfiguration and the kubeconfig: a client
// certificate on masters, a bootstrap token on nodes (the kubelet then
// writes KubeletKubeconfig itself once its CSR is approved).
func (Kubelet) Files(ctx Context) ([]File, error) {
	c, m := ctx.Cluster, ctx.Machine
	cfg := kubeletv1beta1.KubeletConfiguration{
		Authentication: kubeletv1beta1.KubeletAuthentication{
			Anonymous: kubeletv1beta1.KubeletAnonymousAuthentication{Enabled: ptr.To(false)},
			Webhook:   kubeletv1beta1.KubeletWebhookAuthentication{Enabled: ptr.To(true), CacheTTL: metav1.Duration{Duration: 2 * time.Minute}},
			X509:      kubeletv1beta1.KubeletX509Authentication{ClientCAFile: pki("ca.crt")},
		},
		Authorization:            kubeletv1beta1.KubeletAuthorization{Mode: kubeletv1beta1.KubeletAuthorizationModeWebhook},
		CgroupDriver:             "systemd",
		ClusterDNS:               []string{c.DNSServiceIP.String()},
		ClusterDomain:            c.DNSDomain,
		ContainerRuntimeEndpoint: "unix://" + ContainerdSocket,
		StaticPodPath:            StaticPodDir,
		ReadOnlyPort:             0,
		HealthzBindAddress:       "127.0.0.1",
		HealthzPort:              ptr.To[int32](KubeletHealthzPort),
		RotateCertificates:       true,
		ResolverConfig:           ptr.To(systemdResolvConf),
		TLSMinVersion:            TLSMinVersion,
		TLSCipherSuites:          TLSCipherSuites(),
		// Refuse to start where the kernel tunables differ from what the
		// kubelet expects rather than change them (CIS): the image sets
		// them (ImageFiles).
		ProtectKernelDefaults: true,
		// Limits (CIS 4.2.8, 4.2.13), written out where they are
		// upstream's defaults so that the configuration shows them: events
		// a kubelet may post, pods per machine, processes per pod (a fork
		// bomb in one pod cannot exhaust the machine's PIDs).
		EventRecordQPS: ptr.To[int32](kubeletEventQPS),
		EventBurst:     kubeletEventBurst,
		MaxPods:        kubeletMaxPods,
		PodPidsLimit:   ptr.To[int64](kubeletPodPidsLimit),
	}
	cfg.APIVersion, cfg.Kind = "kubelet.config.k8s.io/v1beta1", "KubeletConfiguration"
	var kc []byte
	var err error
	path := KubeletKubeconfig
	if m.Role == Master {
		cfg.TLSCertFile, cfg.TLSPrivateKeyFile = pki("kubelet.crt"), pki("kubelet.key")
		cfg.RegisterWithTaints = []corev1.Taint{{Key: ControlPlaneTaint, Effect: corev1.TaintEffectNoSchedule}}
		kc, err = certKubeconfig(c.Name, MachineAPIServer(), "system:node:"+m.Name, pki("kubelet-client.crt"), pki("kubelet-client.key"))
	} else {
		// Serving certificates come from a CSR too (signer
		// kubernetes.io/kubelet-serving), so the API server can verify the
		// kubelet it talks to.
		cfg.ServerTLSBootstrap = true
		path = BootstrapKubeconfig
		kc, err = tokenKubeconfig(c.Name, MachineAPIServer(), "kubelet-bootstrap", ctx.Secrets.BootstrapToken)
	}
	if err != nil {
		return nil, err
	}
	conf, err := marshalConfig(cfg, "logging")
	if err != nil {
		return nil, fmt.Errorf("kubelet config: %w", err)
	}
	return []File{
		{Path: path, Mode: 0o600, Content: kc},
		{Path: KubeletConfigPath, Mode: 0o600, Content: conf},
	}, nil
}

// Health is the kubelet's loopback-only healthz (plain HTTP, no data).
func (Kubelet) Health() Endpoint {
	return Endpoint{URL: fmt.Sprintf("http://127.0.0.1:%d/healthz", KubeletHealthzPort), Auth: AuthNone}
}

// Metrics (and /metrics/cadvisor) are on the authenticated TLS port.
func (Kubelet) Metrics() *Endpoint {
	return &Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/metrics", KubeletPort), Auth: AuthBearer}
}

func (Kubelet) Certificates(r Role) []string {
	if r == Master {
		return []string{"kubernetes-ca", "kubelet-client", "kubelet-server"}
	}
	return []string{"kubernetes-ca"}
}
