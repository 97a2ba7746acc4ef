package config

import (
	"strings"
	"time"
)

// APIVersion and Kind identify the only file format this package reads.
const (
	APIVersion = "kubeup.dev/v1alpha1"
	Kind       = "Cluster"
)

// Cluster is one cluster's description, as written in a config file.
type Cluster struct {
	APIVersion string      `json:"apiVersion"`
	Kind       string      `json:"kind"`
	Metadata   ObjectMeta  `json:"metadata"`
	Spec       ClusterSpec `json:"spec"`
}

// ObjectMeta names the cluster.
type ObjectMeta struct {
	// Name is the cluster's name: a DNS label of at most 40 characters. It
	// names the Pulumi stack, the state directory and the etcd cluster token.
	Name string `json:"name"`
}

// ClusterSpec is everything about the cluster except its name.
type ClusterSpec struct {
	// KubernetesVersion must be one kubeup has pinned artifacts for.
	KubernetesVersion string `json:"kubernetesVersion,omitempty"`
	// Masters run etcd and the control plane (and a kubelet, tainted
	// NoSchedule). An odd count keeps etcd's quorum meaningful.
	Masters MachinePool `json:"masters"`
	// Nodes run workloads.
	Nodes   MachinePool `json:"nodes"`
	Network Network     `json:"network,omitempty"`
	Etcd    Etcd        `json:"etcd,omitempty"`
	Addons  Addons      `json:"addons,omitempty"`
	// PodSecurity are the Pod Security Standards levels every namespace
	// gets unless it is labelled otherwise.
	PodSecurity PodSecurity `json:"podSecurity,omitempty"`
	PKI         PKI         `json:"pki,omitempty"`
	SSH         SSH         `json:"ssh,omitempty"`
	Target      Target      `json:"target,omitempty"`
}

// MachinePool is a set of identical machines, given by count or by names.
type MachinePool struct {
	// Count machines named <role>-0, <role>-1, ... Ignored when Names is set.
	Count *int `json:"count,omitempty"`
	// Names lists the machines explicitly (DNS labels, unique in the cluster).
	Names []string `json:"names,omitempty"`
	// CPUs per machine.
	CPUs int `json:"cpus,omitempty"`
	// Memory per machine, as a Kubernetes quantity ("2Gi").
	Memory string `json:"memory,omitempty"`
	// DiskSize per machine ("10Gi"); the root filesystem grows to fill it.
	DiskSize string `json:"diskSize,omitempty"`
	// Firmware the machines boot with: uefi or bios. The images boot by
	// either; locally it picks QEMU's firmware (OVMF or SeaBIOS).
	Firmware string `json:"firmware,omitempty"`
}

// Firmwares a machine pool may boot with.
const (
	FirmwareUEFI = "uefi"
	FirmwareBIOS = "bios"
)

// Network is the cluster's addressing.
type Network struct {
	// MachineCIDR is the network the machines share; machine addresses are
	// assigned from it in order (masters from .10, nodes from .100).
	MachineCIDR string `json:"machineCIDR,omitempty"`
	// PodCIDR is split into one NodeCIDRMaskSize block per node.
	PodCIDR          string `json:"podCIDR,omitempty"`
	NodeCIDRMaskSize int    `json:"nodeCIDRMaskSize,omitempty"`
	// ServiceCIDR holds ClusterIPs; its first address is the API server's
	// and its tenth the cluster DNS service's.
	ServiceCIDR string `json:"serviceCIDR,omitempty"`
	// DNSDomain is the cluster DNS domain ("cluster.local").
	DNSDomain string `json:"dnsDomain,omitempty"`
}

// Etcd configures the masters' etcd snapshots.
type Etcd struct {
	// SnapshotInterval is how often each master snapshots its etcd member,
	// a Go duration ("1h", "30m"); "0s" turns scheduled snapshots off.
	SnapshotInterval string `json:"snapshotInterval,omitempty"`
	// SnapshotsKept is how many snapshots each master keeps (the newest).
	SnapshotsKept *int `json:"snapshotsKept,omitempty"`
}

// SnapshotEvery is SnapshotInterval parsed, its default when unset (0
// when off, or invalid: Validate reports that).
func (e Etcd) SnapshotEvery() time.Duration {
	v := e.SnapshotInterval
	if v == "" {
		v = DefaultEtcdSnapshotInterval
	}
	d, _ := time.ParseDuration(v)
	return d
}

// Kept is SnapshotsKept, or its default when unset.
func (e Etcd) Kept() int {
	if e.SnapshotsKept == nil {
		return DefaultEtcdSnapshotsKept
	}
	return *e.SnapshotsKept
}

// Addons switches the in-cluster addons on or off (all on by default).
type Addons struct {
	DNS        *bool `json:"dns,omitempty"`
	Monitoring *bool `json:"monitoring,omitempty"`
	Logging    *bool `json:"logging,omitempty"`
	UI         *bool `json:"ui,omitempty"`
}

// PodSecurity sets the Pod Security admission levels (privileged, baseline
// or restricted) for namespaces without their own
// pod-security.kubernetes.io labels: pods that break Enforce are refused,
// pods that break Audit are marked in the audit log, and whoever creates a
// pod (or a Deployment, ...) that breaks Warn gets a warning.
type PodSecurity struct {
	Enforce string `json:"enforce,omitempty"`
	Audit   string `json:"audit,omitempty"`
	Warn    string `json:"warn,omitempty"`
}

// Pod Security Standards levels, least strict first.
const (
	PodSecurityPrivileged = "privileged"
	PodSecurityBaseline   = "baseline"
	PodSecurityRestricted = "restricted"
)

// PKI configures the cluster's certificates.
type PKI struct {
	// LeafLifetime is how long every leaf certificate is valid, as a Go
	// duration ("8760h" is a year); CAs last 10 years. Machines renew a
	// leaf when about a third of its lifetime is left. Lifetimes of hours
	// or minutes (at least 20m) are meant for tests of renewal.
	LeafLifetime string `json:"leafLifetime,omitempty"`
}

// SSH configures login to the machines (none by default: appliances are
// managed through the API and kubeup's agent).
type SSH struct {
	AuthorizedKeys []string `json:"authorizedKeys,omitempty"`
}

// Target says where the machines run.
type Target struct {
	// Provider is local (QEMU on this host), metal (machines you own,
	// booted from the network or a boot disk), aws or gcp.
	Provider string       `json:"provider,omitempty"`
	Local    *LocalTarget `json:"local,omitempty"`
	Metal    *MetalTarget `json:"metal,omitempty"`
	AWS      *AWSTarget   `json:"aws,omitempty"`
	GCP      *GCPTarget   `json:"gcp,omitempty"`
}

// Provider names.
const (
	ProviderLocal = "local"
	ProviderMetal = "metal"
	ProviderAWS   = "aws"
	ProviderGCP   = "gcp"
)

// LocalTarget runs machines as QEMU VMs on this host.
type LocalTarget struct {
	// APIServerPort is the 127.0.0.1 port forwarded to the first master's
	// API server; 0 picks a free port.
	APIServerPort int `json:"apiServerPort,omitempty"`
	// Accelerator is auto (probe KVM, fall back to TCG), kvm or tcg.
	Accelerator string `json:"accelerator,omitempty"`
}

// MetalTarget is machines you own: each boots from the network once (iPXE,
// served by kubeup), installs its role's image to its own disk and boots
// from that disk ever after; or boots from a disk `kubeup metal disk`
// wrote. The masters and nodes are the machines of each role (set
// spec.masters and spec.nodes only to repeat the same names).
type MetalTarget struct {
	// Server is the address the machines reach this host's boot server at,
	// an IPv4 address with an optional port ("192.168.10.2:8080"; default
	// port 8080). kubeup listens on it.
	Server string `json:"server"`
	// Gateway is the machines' default route (default: the first address
	// of spec.network.machineCIDR).
	Gateway string `json:"gateway,omitempty"`
	// DNS are the name servers of the machines with static addresses
	// (default: the gateway).
	DNS []string `json:"dns,omitempty"`
	// APIEndpoint is the address nodes and kubeconfigs reach the API server
	// at: a master's address (default: the first master's).
	APIEndpoint string `json:"apiEndpoint,omitempty"`
	// Machines are the cluster's machines.
	Machines []MetalMachine `json:"machines"`
	// BootstrapTokenTTL is how long the bootstrap token in the nodes'
	// seeds is accepted after `up` renders them, a Go duration (default
	// 2h; 10m to 24h): the network boot is unauthenticated, so the only
	// credential a node's seed carries expires once the machines have
	// joined.
	BootstrapTokenTTL string `json:"bootstrapTokenTTL,omitempty"`
	// ProxyDHCP: kubeup also answers the machines' PXE requests as a
	// proxyDHCP server (ports 67 and 4011 on the server address's
	// interface), naming the boot file only; the network's DHCP server
	// keeps leasing addresses and needs no boot settings. Only the
	// machines listed here are answered. Not on the DHCP server's own host.
	ProxyDHCP bool `json:"proxyDHCP,omitempty"`
}

// TokenTTL is BootstrapTokenTTL parsed (0 when invalid: Validate says so).
func (t *MetalTarget) TokenTTL() time.Duration {
	d, _ := time.ParseDuration(t.BootstrapTokenTTL)
	return d
}

// MetalMachine is one machine of the metal target.
type MetalMachine struct {
	// Name is the machine's hostname and Node name.
	Name string `json:"name"`
	// Role is master or node.
	Role Role `json:"role"`
	// MAC is the address of the network interface it boots from and joins
	// the cluster network with ("52:54:00:12:34:56").
	MAC string `json:"mac"`
	// Disk is the device the image is installed to ("/dev/sda",
	// "/dev/disk/by-id/..."); empty: the first disk that is not removable.
	Disk string `json:"disk,omitempty"`
	// Address is its IPv4 address in spec.network.machineCIDR (default:
	// masters from .10, nodes from .100, in the order listed).
	Address string `json:"address,omitempty"`
	// DHCP: the machine takes its address from the network's DHCP server,
	// which must give it Address (a reservation); otherwise Address is set
	// statically with the gateway and DNS servers above.
	DHCP bool `json:"dhcp,omitempty"`
	// Firmware is uefi or bios (default: its pool's, uefi).
	Firmware string `json:"firmware,omitempty"`
}

// DefaultMetalPort is the boot server's port when spec.target.metal.server
// names none.
const DefaultMetalPort = 8080

// CloudTarget is what the AWS and GCP targets share.
type CloudTarget struct {
	// AllowedCIDRs may reach the API server (6443) through the load
	// balancer, e.g. ["203.0.113.7/32"] for your own address. Required:
	// kubeup does not open a cluster's API to the whole internet, and
	// refuses 0.0.0.0/0.
	AllowedCIDRs []string `json:"allowedCIDRs,omitempty"`
	// SSHCIDRs may reach port 22 of every machine (which then has a public
	// address); only with spec.ssh.authorizedKeys. Default: no SSH, no
	// public addresses on machines.
	SSHCIDRs []string `json:"sshCIDRs,omitempty"`
	// VPC and Subnet name an existing network to deploy into (AWS: vpc-…
	// and subnet-… ids; GCP: network and subnetwork names) whose range
	// holds spec.network.machineCIDR; both or neither. Default: a new one.
	VPC    string `json:"vpc,omitempty"`
	Subnet string `json:"subnet,omitempty"`
	// Tags (AWS) or labels (GCP) added to everything kubeup creates,
	// beside kubeup.dev/cluster=<name> (kubeup-cluster on GCP).
	Tags map[string]string `json:"tags,omitempty"`
}

// AWSTarget runs machines as EC2 instances.
type AWSTarget struct {
	// Region is required ("eu-west-1").
	Region string `json:"region,omitempty"`
	// Zone is the availability zone of the subnet and the machines
	// (default: the region's "a" zone).
	Zone string `json:"zone,omitempty"`
	// InstanceType is both roles' instance type unless one is set below
	// (defaults: t3.medium masters, t3.large nodes). Only types in kubeup's
	// catalogue (infra/cloud) are accepted.
	InstanceType       string `json:"instanceType,omitempty"`
	MasterInstanceType string `json:"masterInstanceType,omitempty"`
	NodeInstanceType   string `json:"nodeInstanceType,omitempty"`
	CloudTarget        `json:",inline"`
}

// GCPTarget runs machines as Compute Engine instances.
type GCPTarget struct {
	// Project and Zone are required; the region is the zone's.
	Project string `json:"project,omitempty"`
	Zone    string `json:"zone,omitempty"`
	// MachineType is both roles' machine type unless one is set below
	// (defaults: e2-medium masters, e2-standard-2 nodes).
	MachineType       string `json:"machineType,omitempty"`
	MasterMachineType string `json:"masterMachineType,omitempty"`
	NodeMachineType   string `json:"nodeMachineType,omitempty"`
	CloudTarget       `json:",inline"`
}

// Region is the GCP region of the zone ("us-central1" of "us-central1-a").
func (g *GCPTarget) Region() string {
	if i := strings.LastIndex(g.Zone, "-"); i > 0 {
		return g.Zone[:i]
	}
	return g.Zone
}

// Enabled reports whether an optional addon switch is on (nil means on).
func Enabled(b *bool) bool { return b == nil || *b }
