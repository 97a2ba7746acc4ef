package agentconfig

import metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

// Path is where the image's agent unit reads its configuration.
const Path = "/etc/kubeup/agent.yaml"

// ArgsVar is the variable each component's env file sets to its flags and
// each ExecStart expands.
const ArgsVar = "KUBEUP_ARGS"

// AgentUnit is the agent's own systemd unit, which its admin API refuses
// to stop or restart (it would cut itself off).
const AgentUnit = "kubeup-agent.service"

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
	// RegistryMirror is the loopback address of the agent's read-only
	// registry (plain HTTP): it serves the images in the machine's
	// containerd to containerd itself, the mirror every registry's
	// hosts.toml names first, so a pull of an image the machine already
	// has (imagePullPolicy Always, an air-gapped machine) succeeds. Empty:
	// no mirror.
	RegistryMirror string `json:"registryMirror,omitempty"`
	// Scrape are loopback-only plain-HTTP metrics endpoints (containerd,
	// kube-proxy) the agent serves onwards at /metrics/<name> over TLS.
	Scrape map[string]string `json:"scrape,omitempty"`
	// Renewal is the certificates the agent renews before they expire.
	Renewal *Renewal `json:"renewal,omitempty"`
	// Inspect is what GET /v1/config reports of the machine's
	// configuration (`kubeup verify --cis`).
	Inspect Inspect `json:"inspect,omitempty"`
}

// Renewal configures certificate renewal. A leaf is renewed when less than
// a third of its lifetime is left, or a little earlier (a jitter of up to a
// tenth of it, fixed per machine and file, so machines do not renew in
// step).
type Renewal struct {
	// Lifetime of renewed certificates.
	Lifetime metav1.Duration `json:"lifetime"`
	// Dir is the machine's PKI directory: every leaf <name>.crt in it
	// (with its <name>.key) signed by a CA whose key is in it too
	// (<ca>.crt with <ca>.key) is re-issued on the machine, with the same
	// subject, names, usages and key (masters, which hold every CA key).
	Dir string `json:"dir"`
	// Requests are leaves renewed through the API's
	// CertificateSigningRequests, with a new key (nodes, which hold no CA
	// key).
	Requests []RenewalRequest `json:"requests,omitempty"`
	// Join: the machine's seed carries none of the Requests' keys (the
	// metal target, whose network boot is unauthenticated): at its first
	// start the agent asks for each missing one, by its Template, with the
	// bootstrap token's kubeconfig, before anything else.
	Join *Join `json:"join,omitempty"`
}

// Join says how a node's agent asks for its first certificates.
type Join struct {
	// BootstrapKubeconfig authenticates with the cluster's bootstrap
	// token (the kubelet's TLS-bootstrap kubeconfig).
	BootstrapKubeconfig string `json:"bootstrapKubeconfig"`
}

// RenewalRequest is a certificate renewed through a CSR to SignerName,
// asked for with the agent's own client certificate.
type RenewalRequest struct {
	CertFile   string `json:"certFile"`
	KeyFile    string `json:"keyFile"`
	SignerName string `json:"signerName"`
	// Template is the certificate asked for when there is none yet (Join).
	Template *CertTemplate `json:"template,omitempty"`
}

// CertTemplate is what a first certificate is asked for with.
type CertTemplate struct {
	CommonName   string   `json:"commonName"`
	Organization []string `json:"organization,omitempty"`
	DNSNames     []string `json:"dnsNames,omitempty"`
	IPAddresses  []string `json:"ipAddresses,omitempty"`
	// ServerAuth and ClientAuth are its extended key usages (besides
	// digital signature).
	ServerAuth bool `json:"serverAuth,omitempty"`
	ClientAuth bool `json:"clientAuth,omitempty"`
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

// Etcd lets the agent on a master report etcd member health, take
// snapshots and restore one. etcd runs without its own RBAC (client
// certificates from the etcd CA are the access control), so the
// healthcheck client certificate may also take snapshots.
type Etcd struct {
	Endpoints []string `json:"endpoints"`
	CAFile    string   `json:"caFile"`
	CertFile  string   `json:"certFile"`
	KeyFile   string   `json:"keyFile"`
	// Member is the machine's own etcd member as its flags give it: what
	// `etcdutl snapshot restore` needs to rebuild its data directory.
	Member *EtcdMember `json:"member,omitempty"`
	// Snapshots are the scheduled snapshots of the local member.
	Snapshots *EtcdSnapshots `json:"snapshots,omitempty"`
}

// EtcdMember is the machine's etcd member: its unit, the client URL it
// answers on locally, and the values of etcd's flags of the same names.
type EtcdMember struct {
	Unit                     string `json:"unit"`
	ClientURL                string `json:"clientURL"`
	Name                     string `json:"name"`
	DataDir                  string `json:"dataDir"`
	InitialAdvertisePeerURLs string `json:"initialAdvertisePeerURLs"`
	InitialCluster           string `json:"initialCluster"`
	InitialClusterToken      string `json:"initialClusterToken"`
}

// EtcdSnapshots configures `kubeup-agent etcd-snapshot`, which a timer
// starts every few minutes: it takes a snapshot when the last good one is
// older than Interval, and keeps the newest Keep.
type EtcdSnapshots struct {
	Dir string `json:"dir"`
	// Interval is a Go duration ("1h0m0s"); "0s" turns snapshots off.
	Interval string `json:"interval"`
	Keep     int    `json:"keep"`
}
