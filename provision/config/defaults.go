package config

import (
	"net/netip"
	"strings"
)

// Defaults for a cluster; the embedded default (kubeup up with no config)
// is Default("kubeup").
const (
	DefaultKubernetesVersion = "v1.37.2"
	DefaultMachineCIDR       = "10.77.0.0/24"
	DefaultPodCIDR           = "10.244.0.0/16"
	DefaultNodeCIDRMaskSize  = 24
	DefaultServiceCIDR       = "10.96.0.0/12"
	DefaultDNSDomain         = "cluster.local"
	DefaultMasterCPUs        = 2
	// Masters run the control plane and the UI; the addons with data
	// (Prometheus, the log store and aggregator) run on the first node,
	// which measured 286 MB in use before them and about 550 MB with them.
	DefaultMasterMemory = "3Gi"
	DefaultNodeCPUs     = 2
	DefaultNodeMemory   = "2Gi"
	DefaultDiskSize     = "10Gi"
	DefaultAccelerator  = "auto"
	// Pod Security: what kubeadm users turn on first. baseline refuses
	// what breaks out to the host (privileged containers, host namespaces
	// and paths, added capabilities); restricted, which most images do not
	// meet yet, is audited and warned about.
	DefaultPodSecurityEnforce = PodSecurityBaseline
	DefaultPodSecurityAudit   = PodSecurityRestricted
	DefaultPodSecurityWarn    = PodSecurityRestricted
	// A snapshot an hour, a day of them: a restore loses at most an hour,
	// and 24 copies of a small cluster's datastore (a few tens of MB each)
	// fit the masters' disks beside Prometheus and the log store.
	DefaultEtcdSnapshotInterval = "1h"
	DefaultEtcdSnapshotsKept    = 24

	// DefaultBootstrapTokenTTL: the metal target's bootstrap token lasts
	// the install wait (1h) and the readiness waits after it.
	DefaultBootstrapTokenTTL = "2h"

	// DefaultLeafLifetime is a year, as kubeadm's.
	DefaultLeafLifetime = "8760h"
)

// SupportedKubernetesVersions are the versions kubeup has pinned artifacts for.
func SupportedKubernetesVersions() []string { return []string{DefaultKubernetesVersion} }

// Default returns the built-in cluster: one master and one node on the local
// target, with every addon.
func Default(name string) *Cluster {
	one := 1
	c := &Cluster{
		APIVersion: APIVersion,
		Kind:       Kind,
		Metadata:   ObjectMeta{Name: name},
		Spec: ClusterSpec{
			Masters: MachinePool{Count: &one},
			Nodes:   MachinePool{Count: &one},
		},
	}
	SetDefaults(c)
	return c
}

// SetDefaults fills every unset field. It never overrides a set value.
func SetDefaults(c *Cluster) {
	s := &c.Spec
	setString(&s.KubernetesVersion, DefaultKubernetesVersion)
	if s.Target.Provider == ProviderMetal && s.Target.Metal != nil {
		metalPools(s)
	}
	defaultPool(&s.Masters, 1, DefaultMasterCPUs, DefaultMasterMemory)
	defaultPool(&s.Nodes, 1, DefaultNodeCPUs, DefaultNodeMemory)
	n := &s.Network
	setString(&n.MachineCIDR, DefaultMachineCIDR)
	setString(&n.PodCIDR, DefaultPodCIDR)
	setString(&n.ServiceCIDR, DefaultServiceCIDR)
	setString(&n.DNSDomain, DefaultDNSDomain)
	if n.NodeCIDRMaskSize == 0 {
		n.NodeCIDRMaskSize = DefaultNodeCIDRMaskSize
	}
	setString(&s.Etcd.SnapshotInterval, DefaultEtcdSnapshotInterval)
	if s.Etcd.SnapshotsKept == nil {
		kept := DefaultEtcdSnapshotsKept
		s.Etcd.SnapshotsKept = &kept
	}
	for _, a := range []**bool{&s.Addons.DNS, &s.Addons.Monitoring, &s.Addons.Logging, &s.Addons.UI} {
		if *a == nil {
			on := true
			*a = &on
		}
	}
	ps := &s.PodSecurity
	setString(&ps.Enforce, DefaultPodSecurityEnforce)
	setString(&ps.Audit, DefaultPodSecurityAudit)
	setString(&ps.Warn, DefaultPodSecurityWarn)
	setString(&s.PKI.LeafLifetime, DefaultLeafLifetime)
	t := &s.Target
	setString(&t.Provider, ProviderLocal)
	if t.Provider == ProviderLocal {
		if t.Local == nil {
			t.Local = &LocalTarget{}
		}
		setString(&t.Local.Accelerator, DefaultAccelerator)
	}
	if t.Provider == ProviderMetal && t.Metal != nil {
		defaultMetal(s)
	}
}

// metalPools names the masters and nodes after the metal machines of each
// role, where the config does not list them itself.
func metalPools(s *ClusterSpec) {
	for _, p := range []struct {
		pool *MachinePool
		role Role
	}{{&s.Masters, RoleMaster}, {&s.Nodes, RoleNode}} {
		if p.pool.Count != nil || len(p.pool.Names) > 0 {
			continue
		}
		var names []string
		for _, m := range s.Target.Metal.Machines {
			if m.Role == p.role {
				names = append(names, m.Name)
			}
		}
		if len(names) == 0 {
			zero := 0
			p.pool.Count = &zero
			continue
		}
		p.pool.Names = names
	}
}

// defaultMetal gives metal machines their addresses (masters from .10,
// nodes from .100 of the machine network, in the order listed), their
// pool's firmware, and the target its gateway, DNS and API endpoint.
func defaultMetal(s *ClusterSpec) {
	mt := s.Target.Metal
	setString(&mt.BootstrapTokenTTL, DefaultBootstrapTokenTTL)
	prefix, err := netip.ParsePrefix(s.Network.MachineCIDR)
	if err == nil {
		setString(&mt.Gateway, nthAddr(prefix.Masked().Addr(), 1).String())
	}
	if len(mt.DNS) == 0 && mt.Gateway != "" {
		mt.DNS = []string{mt.Gateway}
	}
	next := map[Role]int{RoleMaster: firstMasterHost, RoleNode: firstNodeHost}
	for i := range mt.Machines {
		m := &mt.Machines[i]
		m.MAC = strings.ToLower(m.MAC)
		if n, ok := next[m.Role]; ok {
			if m.Address == "" && err == nil {
				m.Address = nthAddr(prefix.Masked().Addr(), n).String()
			}
			next[m.Role] = n + 1
		}
		switch m.Role {
		case RoleMaster:
			setString(&m.Firmware, s.Masters.Firmware)
			setString(&mt.APIEndpoint, m.Address)
		case RoleNode:
			setString(&m.Firmware, s.Nodes.Firmware)
		}
	}
}

// ServerAddr is spec.target.metal.server with its port ("" when unset or
// invalid: Validate reports that).
func (t *MetalTarget) ServerAddr() string {
	if t == nil || t.Server == "" {
		return ""
	}
	if ap, err := netip.ParseAddrPort(t.Server); err == nil {
		return ap.String()
	}
	if a, err := netip.ParseAddr(t.Server); err == nil {
		return netip.AddrPortFrom(a, DefaultMetalPort).String()
	}
	return ""
}

// MetalMachine finds a metal machine by name.
func (t *MetalTarget) Machine(name string) (MetalMachine, bool) {
	if t == nil {
		return MetalMachine{}, false
	}
	for _, m := range t.Machines {
		if m.Name == name {
			return m, true
		}
	}
	return MetalMachine{}, false
}

func defaultPool(p *MachinePool, count, cpus int, memory string) {
	if p.Count == nil && len(p.Names) == 0 {
		p.Count = &count
	}
	if p.CPUs == 0 {
		p.CPUs = cpus
	}
	setString(&p.Memory, memory)
	setString(&p.DiskSize, DefaultDiskSize)
	setString(&p.Firmware, FirmwareUEFI)
}

func setString(p *string, v string) {
	if *p == "" {
		*p = v
	}
}
