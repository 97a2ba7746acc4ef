package components

import (
	"fmt"
	"io/fs"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/systemd"
)

// Role is what a machine runs.
type Role string

// Roles.
const (
	Master Role = "master"
	Node   Role = "node"
)

// Roles lists every role in build order.
func Roles() []Role { return []Role{Master, Node} }

// Machine is one machine of the cluster.
type Machine struct {
	Name string     `json:"name"`
	Role Role       `json:"role"`
	IP   netip.Addr `json:"ip"`
	// EtcdJoin: a master that replaces one of the cluster's (kubeup
	// replace) joins the running etcd cluster, whose member list already
	// has it, instead of forming one with the others at first boot.
	EtcdJoin bool `json:"etcdJoin,omitempty"`
}

// Images are the container image references the rendered configs use; they
// come from images/versions.yaml and are preloaded into every image.
type Images struct {
	Pause         string `json:"pause"`
	CoreDNS       string `json:"coreDNS"`
	Testbox       string `json:"testbox"`
	Prometheus    string `json:"prometheus"`
	LogStore      string `json:"logStore"`      // VictoriaLogs
	LogAggregator string `json:"logAggregator"` // OpenTelemetry Collector
	UI            string `json:"ui"`            // kubeup-addons, run as `kubeup-addons ui`
}

// Addons are the cluster addons switched on.
type Addons struct {
	DNS        bool `json:"dns"`
	Monitoring bool `json:"monitoring"`
	Logging    bool `json:"logging"`
	UI         bool `json:"ui"`
	// AgentAccess: a pod on every machine through which the host reaches
	// its agent (addons.AgentAccess), on the clouds.
	AgentAccess bool `json:"agentAccess,omitempty"`
}

// Cluster is the resolved cluster description the components need.
type Cluster struct {
	Name              string    `json:"name"`
	KubernetesVersion string    `json:"kubernetesVersion"`
	Masters           []Machine `json:"masters"`
	// AddonMachine is the machine the addons that keep data in hostPath
	// directories (Prometheus, the log store, the log aggregator's queue)
	// run on: the first node, or the first master in a cluster without
	// nodes. Empty: on a master (configs rendered before it existed).
	AddonMachine       string       `json:"addonMachine,omitempty"`
	MachineCIDR        netip.Prefix `json:"machineCIDR"`
	MachineGateway     netip.Addr   `json:"machineGateway"`
	PodCIDR            netip.Prefix `json:"podCIDR"`
	NodeCIDRMaskSize   int          `json:"nodeCIDRMaskSize"`
	ServiceCIDR        netip.Prefix `json:"serviceCIDR"`
	APIServerServiceIP netip.Addr   `json:"apiServerServiceIP"`
	DNSServiceIP       netip.Addr   `json:"dnsServiceIP"`
	DNSDomain          string       `json:"dnsDomain"`
	// APIServerEndpoint is the API's URL from outside the machines (the
	// admin kubeconfig); the machines use MachineAPIServer.
	APIServerEndpoint string `json:"apiServerEndpoint"`
	// LogForward is the log aggregator's forward-protocol address, empty
	// when the logging addon is off.
	LogForward string `json:"logForward"`
	Images     Images `json:"images"`
	Addons     Addons `json:"addons"`
	// UpstreamDNS says whether machines have a resolver for names outside
	// the cluster (cluster DNS forwards to it); local clusters have none.
	UpstreamDNS bool `json:"upstreamDNS"`
	// PodSecurity are the cluster-wide Pod Security admission levels.
	PodSecurity PodSecurity `json:"podSecurity"`
	// LeafLifetime is how long leaf certificates are valid: those kubeup
	// issues, those the machines renew, and those the controller-manager
	// signs from CSRs.
	LeafLifetime time.Duration `json:"leafLifetime"`
	// EtcdSnapshots schedules the masters' etcd snapshots.
	EtcdSnapshots EtcdSnapshots `json:"etcdSnapshots"`
	// NodesJoin: nodes' seeds carry no keys; a node's agent asks for its
	// NodeCredentials with the bootstrap token at its first start, as its
	// kubelet does for its own (the metal target, whose network boot is
	// unauthenticated).
	NodesJoin bool `json:"nodesJoin,omitempty"`
	// PodCIDRs, on the clouds, are the machines' pod ranges by name, fixed
	// by their addresses (PodCIDRFor) so that the cloud's routes to them
	// exist before the machines do: the controller-manager allocates none
	// and the addon manager sets each Node's. Empty: the controller-manager
	// allocates them.
	PodCIDRs map[string]string `json:"podCIDRs,omitempty"`
}

// PodCIDRFor is a machine's fixed pod range: the block of podCIDR (of
// nodeMask bits) whose index is the machine's offset in machineCIDR, so
// that .10 gets the eleventh block (10.244.10.0/24 with the defaults).
func PodCIDRFor(podCIDR netip.Prefix, nodeMask int, machineCIDR netip.Prefix, ip netip.Addr) (netip.Prefix, error) {
	if !podCIDR.Addr().Is4() || !machineCIDR.Contains(ip) || nodeMask < podCIDR.Bits() || nodeMask > 30 {
		return netip.Prefix{}, fmt.Errorf("no fixed pod range for %s: machine CIDR %s, pod CIDR %s, node mask /%d", ip, machineCIDR, podCIDR, nodeMask)
	}
	base, addr := machineCIDR.Masked().Addr().As4(), ip.As4()
	offset := (uint32(addr[0])<<24 | uint32(addr[1])<<16 | uint32(addr[2])<<8 | uint32(addr[3])) -
		(uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3]))
	if blocks := uint64(1) << (nodeMask - podCIDR.Bits()); uint64(offset) >= blocks {
		return netip.Prefix{}, fmt.Errorf("machine %s is host %d of %s, but pod CIDR %s has only %d blocks of /%d", ip, offset, machineCIDR, podCIDR, blocks, nodeMask)
	}
	p := podCIDR.Masked().Addr().As4()
	start := (uint32(p[0])<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3])) + offset<<(32-nodeMask)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(start >> 24), byte(start >> 16), byte(start >> 8), byte(start)}), nodeMask), nil
}

// EtcdSnapshots are the scheduled etcd snapshots on each master.
type EtcdSnapshots struct {
	// Interval between snapshots; 0 turns them off.
	Interval time.Duration `json:"interval"`
	// Keep is how many snapshots each master keeps.
	Keep int `json:"keep"`
}

// Secrets are the cluster secrets some files embed.
type Secrets struct {
	BootstrapToken string // "abcdef.0123456789abcdef"
	// BootstrapTokenExpires: when the API server stops accepting the
	// token (zero: never). On an open network (the metal target) the
	// token a node's seed carries is good only while machines join.
	BootstrapTokenExpires time.Time
	EncryptionKey         []byte // 32 bytes, for secrets at rest
}

// Context is what a machine-specific render needs.
type Context struct {
	Cluster *Cluster
	Machine Machine
	Secrets Secrets
}

// File is a file to put on a machine.
type File struct {
	Path    string
	Mode    fs.FileMode
	Content []byte
}

// Endpoint is an HTTP(S) endpoint a component serves.
type Endpoint struct {
	// URL as seen from the machine itself, e.g. https://127.0.0.1:10257/healthz.
	URL string
	// Auth says which credentials a client presents: "client-cert" (a
	// certificate from the cluster or etcd CA), "bearer" (a token authorised
	// by RBAC through the component's delegated authorisation), or "none".
	Auth string
}

// Auth kinds of an Endpoint.
const (
	AuthNone       = "none"
	AuthClientCert = "client-cert"
	AuthBearer     = "bearer"
)

// Component is one entry of the catalogue.
type Component interface {
	// Name is the systemd unit name without ".service".
	Name() string
	Description() string
	// Roles that run it.
	Roles() []Role
	// Unit is baked into the role's image; identical for every cluster.
	Unit(role Role) systemd.Unit
	// ImageFiles are static files baked into the image with the unit.
	ImageFiles() []File
	// Flags are machine-specific; cloud-init writes them to EnvFile(Name()).
	Flags(ctx Context) Flags
	// Files are machine-specific config files cloud-init writes.
	Files(ctx Context) ([]File, error)
	// Health is what proves the component is up.
	Health() Endpoint
	// Metrics is where Prometheus-format metrics are served, if anywhere.
	Metrics() *Endpoint
	// Certificates are the PKI table names (provision/pki) the component
	// reads on role, e.g. "apiserver", "kubelet-client".
	Certificates(role Role) []string
}

// Scheduled is a component that runs on a schedule, not all the time (an
// optional ability, like Talos' optional service interfaces): its Unit is
// a oneshot service, and Timer starts it. The role target wants the timer,
// and the agent watches the timer (active while it waits) instead of the
// service (inactive between runs).
type Scheduled interface {
	Component
	// Timer is baked into the role's image beside Unit.
	Timer(role Role) systemd.Unit
}

// ActiveUnit is the unit that stays active while a component is in
// service: a scheduled component's timer, every other one's service.
func ActiveUnit(c Component) string {
	if _, ok := c.(Scheduled); ok {
		return c.Name() + ".timer"
	}
	return c.Name() + ".service"
}

// Catalogue returns every component in start order.
func Catalogue() []Component {
	return []Component{
		Etcd{}, APIServer{}, ControllerManager{}, Scheduler{},
		APILB{}, Containerd{}, Kubelet{}, KubeProxy{}, Agent{}, AddonManager{},
		EtcdSnapshot{},
	}
}

// ForRole returns the components a role runs, in start order.
func ForRole(r Role) []Component {
	var out []Component
	for _, c := range Catalogue() {
		if slices.Contains(c.Roles(), r) {
			out = append(out, c)
		}
	}
	return out
}

// Lookup finds a component by name.
func Lookup(name string) (Component, bool) {
	for _, c := range Catalogue() {
		if c.Name() == name {
			return c, true
		}
	}
	return nil, false
}

// Well-known paths on a machine.
const (
	BinDir        = "/usr/local/bin"
	PKIDir        = "/etc/kubernetes/pki"
	KubernetesDir = "/etc/kubernetes"
	EnvDir        = "/etc/kubeup/env"
	// ArgsVar is the variable each env file sets and each ExecStart expands.
	ArgsVar = agentconfig.ArgsVar
)

// EnvFile is where cloud-init writes a component's flags.
func EnvFile(name string) string { return EnvDir + "/" + name + ".env" }

// pki returns a path under /etc/kubernetes/pki.
func pki(name string) string { return PKIDir + "/" + name }

// Flags are command-line flags; rendering sorts them so output is stable.
type Flags map[string]string

// Args renders the flags as sorted --name=value arguments.
func (f Flags) Args() []string {
	keys := make([]string, 0, len(f))
	for k := range f {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = "--" + k + "=" + f[k]
	}
	return out
}

// EnvVarser is a component whose env file sets variables besides ArgsVar,
// which its unit's Exec lines expand ($NAME, split on whitespace: an empty
// value is no argument at all).
type EnvVarser interface {
	EnvVars(ctx Context) map[string]string
}

// EnvFileContent renders the env file cloud-init writes for a component:
// one ArgsVar assignment, one flag per line (systemd joins lines that end in
// a backslash), then each of vars, sorted. Values must not contain
// whitespace, quotes, backslashes or '$':
// ExecStart expands $KUBEUP_ARGS by splitting on whitespace.
func EnvFileContent(component, machine string, f Flags, vars map[string]string) ([]byte, error) {
	args := f.Args()
	for _, a := range args {
		if strings.ContainsAny(a, " \t\n\"'\\$") {
			return nil, fmt.Errorf("%s flag %q: values must not contain whitespace, quotes, backslashes or '$'", component, a)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# %s flags for %s, rendered by kubeup.\n", component, machine)
	b.WriteString(ArgsVar + "=")
	b.WriteString(strings.Join(args, " \\\n  "))
	b.WriteString("\n")
	for _, k := range slices.Sorted(maps.Keys(vars)) {
		v := vars[k]
		if k == ArgsVar || k == "" || strings.ContainsAny(k, " \t\n\"'\\$=") || strings.ContainsAny(v, " \t\n\"'\\$") {
			return nil, fmt.Errorf("%s variable %s=%q: not a plain name and value", component, k, v)
		}
		fmt.Fprintf(&b, "%s=%s\n", k, v)
	}
	return []byte(b.String()), nil
}

// Leader election of the controller manager and the scheduler. With one
// master there is nobody to hand over to, and on a slow machine a lease
// renewal that misses its deadline makes the daemon exit (and restart) for
// nothing, so a single master runs without it, as k3s does. With several,
// the timings allow for loaded machines: a renewal may take 40 s before the
// leader steps down, and a standby takes over within a minute.
const (
	leaseDuration = 60 * time.Second
	renewDeadline = 40 * time.Second
	retryPeriod   = 5 * time.Second
)

// leaderElect says whether the control-plane daemons elect a leader.
func (c *Cluster) leaderElect() bool { return len(c.Masters) > 1 }
