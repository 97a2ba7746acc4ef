package config

import (
	"fmt"
	"net/netip"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
)

// Role is what a machine runs.
type Role string

// Roles.
const (
	RoleMaster Role = "master"
	RoleNode   Role = "node"
)

// First host numbers of each role in spec.network.machineCIDR.
const (
	firstMasterHost = 10
	firstNodeHost   = 100
)

// Machine is one resolved machine of a valid cluster.
type Machine struct {
	Name      string
	Role      Role
	Index     int // position in its pool
	IP        netip.Addr
	CPUs      int
	MemoryMiB int64
	DiskBytes int64
	Firmware  string // uefi or bios
	// On the metal target: the MAC address it boots from, the disk it
	// installs to ("" for the first one not removable), and whether its
	// address comes from DHCP.
	MAC  string
	Disk string
	DHCP bool
}

// Names returns a pool's machine names: the explicit list, or
// <prefix>-0..<prefix>-(count-1).
func (p MachinePool) names(prefix string) []string {
	if len(p.Names) > 0 {
		return p.Names
	}
	if p.Count == nil {
		return nil
	}
	out := make([]string, 0, *p.Count)
	for i := range max(*p.Count, 0) {
		out = append(out, fmt.Sprintf("%s-%d", prefix, i))
	}
	return out
}

// Masters returns the resolved masters of a valid cluster.
func (c *Cluster) Masters() []Machine { return c.pool(RoleMaster) }

// Nodes returns the resolved nodes of a valid cluster.
func (c *Cluster) Nodes() []Machine { return c.pool(RoleNode) }

// Machines returns masters then nodes.
func (c *Cluster) Machines() []Machine { return append(c.Masters(), c.Nodes()...) }

// Machine finds a machine by name.
func (c *Cluster) Machine(name string) (Machine, bool) {
	for _, m := range c.Machines() {
		if m.Name == name {
			return m, true
		}
	}
	return Machine{}, false
}

func (c *Cluster) pool(role Role) []Machine {
	p, first := c.Spec.Nodes, firstNodeHost
	if role == RoleMaster {
		p, first = c.Spec.Masters, firstMasterHost
	}
	prefix, _ := netip.ParsePrefix(c.Spec.Network.MachineCIDR)
	mem, _ := resource.ParseQuantity(p.Memory)
	disk, _ := resource.ParseQuantity(p.DiskSize)
	var out []Machine
	for i, name := range p.names(string(role)) {
		m := Machine{
			Name: name, Role: role, Index: i,
			IP:        nthAddr(prefix.Masked().Addr(), first+i),
			CPUs:      p.CPUs,
			MemoryMiB: mem.Value() >> 20,
			DiskBytes: disk.Value(),
			Firmware:  p.Firmware,
		}
		if mm, ok := c.Spec.Target.Metal.Machine(name); ok && c.Spec.Target.Provider == ProviderMetal {
			m.IP, _ = netip.ParseAddr(mm.Address)
			m.MAC, m.Disk, m.DHCP, m.Firmware = mm.MAC, mm.Disk, mm.DHCP, mm.Firmware
		}
		out = append(out, m)
	}
	return out
}

// APIServerServiceIP is the first address of the service CIDR.
func (c *Cluster) APIServerServiceIP() netip.Addr { return c.serviceIP(1) }

// DNSServiceIP is the tenth address of the service CIDR (kubeadm's choice).
func (c *Cluster) DNSServiceIP() netip.Addr { return c.serviceIP(10) }

func (c *Cluster) serviceIP(n int) netip.Addr {
	p, err := netip.ParsePrefix(c.Spec.Network.ServiceCIDR)
	if err != nil {
		return netip.Addr{}
	}
	return nthAddr(p.Masked().Addr(), n)
}

// LeafLifetime is spec.pki.leafLifetime as a duration (0 when it does not
// parse: Validate reports that).
func (c *Cluster) LeafLifetime() time.Duration {
	d, err := time.ParseDuration(c.Spec.PKI.LeafLifetime)
	if err != nil {
		return 0
	}
	return d
}

// MachineGateway is the first address of the machine network, used as the
// machines' default route (the local target has no router there: the route
// only satisfies components that refuse to start without one).
func (c *Cluster) MachineGateway() netip.Addr {
	p, _ := netip.ParsePrefix(c.Spec.Network.MachineCIDR)
	return nthAddr(p.Masked().Addr(), 1)
}

// nthAddr adds n to an IPv4 address.
func nthAddr(a netip.Addr, n int) netip.Addr {
	if !a.Is4() {
		return netip.Addr{}
	}
	b := a.As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
