package components

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/systemd"
)

// AddonManager keeps the cluster's addons and bootstrap objects in
// kube-system as declared: it applies the manifests shipped in the image and
// those cloud-init writes, and restores them when they are deleted or edited
// away from their declared state. It also approves kubelet serving
// certificates whose names and addresses match the requesting node and the
// nodes' agents' renewals of their certificates (signing the agent's own,
// AgentSignerName), and labels masters with the control-plane role (which kubelets may not set on
// themselves).
type AddonManager struct{}

// Addon manager paths and port.
const (
	AddonManagerConfigPath = "/etc/kubeup/addon-manager.yaml"
	AddonManagerKubeconfig = KubernetesDir + "/addon-manager.conf"
	// ImageAddonDir holds the manifests baked into the master image;
	// ClusterAddonDir those cloud-init writes (they carry cluster secrets).
	ImageAddonDir    = "/usr/share/kubeup/addons"
	ClusterAddonDir  = "/etc/kubeup/addons"
	AddonManagerPort = 10291
	// Labels of managed objects (the upstream addon manager's convention).
	AddonModeLabel     = "addonmanager.kubernetes.io/mode"
	AddonModeReconcile = "Reconcile"    // kept exactly as declared
	AddonModeEnsure    = "EnsureExists" // created when missing, never overwritten
	// BootstrapGroup is the extra group of the cluster's bootstrap token.
	BootstrapGroup = "system:bootstrappers:kubeup:default-node-token"
)

// AddonManagerConfig is the addon manager's configuration file.
type AddonManagerConfig struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Cluster    string `json:"cluster"`
	Machine    string `json:"machine"`
	Kubeconfig string `json:"kubeconfig"`
	// ManifestDirs are read in order; every *.yaml file may hold several
	// documents. Objects must carry AddonModeLabel.
	ManifestDirs []string `json:"manifestDirs"`
	// Addons is the cluster the addon manager renders the addons of
	// (components/addons), besides the manifests in ManifestDirs: kept in
	// memory, so that the machine's user-data carries a description of a
	// few hundred bytes rather than the manifests (cloud user-data limits,
	// AWS's 16 KiB above all). Absent: ManifestDirs only.
	Addons *Cluster `json:"addons,omitempty"`
	// Resync is how often every object is re-applied even without events.
	Resync metav1.Duration `json:"resync"`
	// Listen serves /healthz and /metrics over TLS.
	Listen       string `json:"listen"`
	CertFile     string `json:"certFile"`
	KeyFile      string `json:"keyFile"`
	ClientCAFile string `json:"clientCAFile"`
	// Signer signs the CSRs of AgentSignerName (nodes' agents renewing
	// their certificate) once approved.
	Signer AddonManagerSigner `json:"signer"`
}

// AddonManagerSigner is the CA the addon manager signs with.
type AddonManagerSigner struct {
	CertFile string `json:"certFile"`
	KeyFile  string `json:"keyFile"`
	// Duration is the longest validity it signs; a CSR may ask for less.
	Duration metav1.Duration `json:"duration"`
}

func (AddonManager) Name() string        { return "kubeup-addon-manager" }
func (AddonManager) Description() string { return "kubeup addon manager" }
func (AddonManager) Roles() []Role       { return []Role{Master} }

// Unit: the addon manager only reads (manifests, its kubeconfig and
// certificates, all root's) and talks to the API server, serves HTTPS on an
// unprivileged port and notifies systemd: it writes nothing and needs no
// capability.
func (a AddonManager) Unit(role Role) systemd.Unit {
	return service(a, role, AddonsBinary+" addon-manager", systemd.Service{
		Wants:           []string{"kube-apiserver.service"},
		After:           []string{"kube-apiserver.service"},
		Type:            "notify",
		WatchdogSec:     agentWatchdog,
		TimeoutStartSec: 5 * time.Minute,
		Limits:          map[string]string{"MemoryMax": "256M"},
		NoNewPrivileges: true,
		ProtectSystem:   "strict",
		ProtectHome:     true,
		PrivateTmp:      true,
		Sandbox:         daemonSandbox([]string{}, "AF_UNIX", "AF_INET", "AF_INET6"),
		// One P, as the agent: a few loops and informers, no parallel work.
		Environment: map[string]string{"GOMAXPROCS": "1"},
	})
}

func (AddonManager) ImageFiles() []File { return nil }

func (AddonManager) Flags(Context) Flags { return Flags{"config": AddonManagerConfigPath} }

// Files are the manager's config, its kubeconfig, and the cluster-specific
// bootstrap objects: the bootstrap token and the RBAC that lets kubelets
// holding it join (TLS bootstrapping, as kubeadm sets it up).
func (AddonManager) Files(ctx Context) ([]File, error) {
	cfg := AddonManagerConfig{
		APIVersion: "kubeup.dev/v1alpha1", Kind: "AddonManagerConfig",
		Cluster: ctx.Cluster.Name, Machine: ctx.Machine.Name,
		Kubeconfig:   AddonManagerKubeconfig,
		ManifestDirs: []string{ImageAddonDir, ClusterAddonDir},
		Addons:       ctx.Cluster,
		Resync:       metav1.Duration{Duration: time.Minute},
		Listen:       fmt.Sprintf(":%d", AddonManagerPort),
		CertFile:     pki("kubeup-agent.crt"),
		KeyFile:      pki("kubeup-agent.key"),
		ClientCAFile: pki("ca.crt"),
		Signer: AddonManagerSigner{CertFile: pki("ca.crt"), KeyFile: pki("ca.key"),
			Duration: metav1.Duration{Duration: ctx.Cluster.LeafLifetime}},
	}
	conf, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("addon manager config: %w", err)
	}
	kc, err := certKubeconfig(ctx.Cluster.Name, MachineAPIServer(), "system:kubeup-addon-manager",
		pki("addon-manager-client.crt"), pki("addon-manager-client.key"))
	if err != nil {
		return nil, err
	}
	boot, err := BootstrapManifests(ctx.Secrets.BootstrapToken, ctx.Secrets.BootstrapTokenExpires)
	if err != nil {
		return nil, err
	}
	return []File{
		{Path: AddonManagerConfigPath, Mode: 0o644, Content: conf},
		{Path: AddonManagerKubeconfig, Mode: 0o600, Content: kc},
		{Path: ClusterAddonDir + "/bootstrap.yaml", Mode: 0o600, Content: boot},
	}, nil
}

// BootstrapManifests are the objects node TLS bootstrapping needs: the
// token's Secret, and bindings that let its holders create CSRs, have their
// client CSRs approved, and let nodes renew their own certificates. A
// token with a non-zero expires carries it as its expiration: the API
// server refuses it after that, and the addon manager prunes it.
func BootstrapManifests(token string, expires time.Time) ([]byte, error) {
	if len(token) != 23 || token[6] != '.' {
		return nil, fmt.Errorf("bootstrap token %q is not of the form [a-z0-9]{6}.[a-z0-9]{16}", token)
	}
	id, secret := token[:6], token[7:]
	labels := map[string]string{AddonModeLabel: AddonModeReconcile}
	group := []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: BootstrapGroup}}
	binding := func(name, role string, subjects []rbacv1.Subject) *rbacv1.ClusterRoleBinding {
		b := &rbacv1.ClusterRoleBinding{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRoleBinding"},
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			RoleRef:    rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects:   subjects,
		}
		return b
	}
	tokenSecret := &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: metav1.ObjectMeta{Name: "bootstrap-token-" + id, Namespace: "kube-system", Labels: labels},
		Type:       corev1.SecretTypeBootstrapToken,
		StringData: map[string]string{
			"description":                    "kubeup: lets nodes join by TLS bootstrapping",
			"token-id":                       id,
			"token-secret":                   secret,
			"usage-bootstrap-authentication": "true",
			"usage-bootstrap-signing":        "true",
			"auth-extra-groups":              BootstrapGroup,
		},
	}
	if !expires.IsZero() {
		tokenSecret.StringData["expiration"] = expires.UTC().Format(time.RFC3339)
	}
	objs := []any{
		tokenSecret,
		binding("kubeup:kubelet-bootstrap", "system:node-bootstrapper", group),
		binding("kubeup:node-autoapprove-bootstrap", "system:certificates.k8s.io:certificatesigningrequests:nodeclient", group),
		binding("kubeup:node-autoapprove-certificate-rotation", "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
			[]rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: "system:nodes"}}),
		// The node agents: watch Nodes (pod network routes), check the
		// bearer tokens Prometheus presents for their metrics, and ask for
		// their renewed certificates (which the addon manager approves
		// only when they are exactly a node's credentials).
		&rbacv1.ClusterRole{
			TypeMeta:   metav1.TypeMeta{APIVersion: "rbac.authorization.k8s.io/v1", Kind: "ClusterRole"},
			ObjectMeta: metav1.ObjectMeta{Name: AgentClusterRole, Labels: labels},
			Rules: []rbacv1.PolicyRule{
				{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get", "list", "watch"}},
				{APIGroups: []string{"authentication.k8s.io"}, Resources: []string{"tokenreviews"}, Verbs: []string{"create"}},
				{APIGroups: []string{"authorization.k8s.io"}, Resources: []string{"subjectaccessreviews"}, Verbs: []string{"create"}},
				{APIGroups: []string{"certificates.k8s.io"}, Resources: []string{"certificatesigningrequests"}, Verbs: []string{"create", "get"}},
			},
		},
		binding(AgentClusterRole, AgentClusterRole, []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: AgentGroup}}),
	}
	var out []byte
	for i, o := range objs {
		data, err := yaml.Marshal(o)
		if err != nil {
			return nil, fmt.Errorf("bootstrap manifests: %w", err)
		}
		if i > 0 {
			out = append(out, "---\n"...)
		}
		out = append(out, data...)
	}
	return out, nil
}

func (AddonManager) Health() Endpoint {
	return Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/healthz", AddonManagerPort), Auth: AuthNone}
}

func (AddonManager) Metrics() *Endpoint {
	return &Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/metrics", AddonManagerPort), Auth: AuthBearer}
}

func (AddonManager) Certificates(Role) []string {
	return []string{"kubernetes-ca", "addon-manager", "kubeup-agent"}
}
