package agentconfig

// Path is where the image's agent unit reads its configuration.
const Path = "/etc/kubeup/agent.yaml"

// ArgsVar is the variable each component's env file sets to its flags and
// each ExecStart expands.
const ArgsVar = "KUBEUP_ARGS"

// LogIdentifier is the SYSLOG_IDENTIFIER whose journal lines are forwarded
// whatever their unit (`systemd-cat -t kubeup`).
const LogIdentifier = "kubeup"

// Machine roles, as in the cluster configuration.
const (
	RoleMaster = "master"
	RoleNode   = "node"
)

// Config is the agent's configuration file.
type Config struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Cluster    string `json:"cluster"`
	Machine    string `json:"machine"`
	// Role is RoleMaster or RoleNode.
	Role      string `json:"role"`
	MachineIP string `json:"machineIP"`
	// Listen is the TLS address of the agent's API and metrics.
	Listen       string `json:"listen"`
	CertFile     string `json:"certFile"`
	KeyFile      string `json:"keyFile"`
	ClientCAFile string `json:"clientCAFile"`
	// Kubeconfig is the agent's own (group kubeup:agents): the node
	// authorizer no longer lets a kubelet's identity list other Nodes.
	Kubeconfig string `json:"kubeconfig"`
	// StaticPodDir is the kubelet's manifest directory, whose pods the
	// agent reports; absent means /etc/kubernetes/manifests.
	StaticPodDir string `json:"staticPodDir,omitempty"`
	// Units are the systemd units the agent watches and forwards logs of.
	Units []string `json:"units"`
	// CertificateDirs are scanned for certificates to report expiry of.
	CertificateDirs []string `json:"certificateDirs"`
	Logs            Logs     `json:"logs"`
	Network         Net      `json:"network"`
	Etcd            *Etcd    `json:"etcd,omitempty"`
	// Scrape are loopback-only plain-HTTP metrics endpoints (containerd,
	// kube-proxy) the agent serves onwards at /metrics/<name> over TLS.
	Scrape map[string]string `json:"scrape,omitempty"`
	// Inspect is what GET /v1/config reports of the machine's
	// configuration (`kubeup verify --cis`).
	Inspect Inspect `json:"inspect,omitempty"`
}

// Inspect names what the agent reports of the machine's configuration.
type Inspect struct {
	// EnvFiles maps units to their env files: the agent reports the flags
	// of each file's ArgsVar assignment.
	EnvFiles map[string]string `json:"envFiles,omitempty"`
	// ConfigFiles are reported with their content: the components'
	// configuration files that hold no secret.
	ConfigFiles []string `json:"configFiles,omitempty"`
	// Paths are reported by mode and owner only; a directory with
	// everything under it.
	Paths []string `json:"paths,omitempty"`
}

// Logs configures log forwarding: the journal of Units, journal lines
// tagged with one of Identifiers, and the containers' logs.
type Logs struct {
	// Forward is the fluentd forward-protocol address (host:port); empty
	// when the logging addon is off.
	Forward        string `json:"forward,omitempty"`
	BufferDir      string `json:"bufferDir"`
	BufferMaxBytes int64  `json:"bufferMaxBytes"`
	// StateDir keeps the journal cursor and the pod log files' offsets.
	StateDir string `json:"stateDir,omitempty"`
	// Identifiers are SYSLOG_IDENTIFIERs forwarded besides the units'
	// journal (`systemd-cat -t kubeup`); absent means [LogIdentifier].
	Identifiers []string `json:"identifiers,omitempty"`
	// AuditLog is the API server's audit log (masters), forwarded as
	// source "audit"; the files it rotates to are found beside it.
	AuditLog string `json:"auditLog,omitempty"`
}

// Net configures pod networking between machines.
type Net struct {
	ClusterPodCIDR string `json:"clusterPodCIDR"`
	CNIConfDir     string `json:"cniConfDir"`
}

// Etcd lets the agent on a master report etcd member health.
type Etcd struct {
	Endpoints []string `json:"endpoints"`
	CAFile    string   `json:"caFile"`
	CertFile  string   `json:"certFile"`
	KeyFile   string   `json:"keyFile"`
}
