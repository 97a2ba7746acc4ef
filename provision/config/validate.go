package config

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/infra/cloud"
)

// Limits the validation enforces.
const (
	maxClusterNameLen = 40
	maxMasters        = 7
	maxNodes          = 50
	minMemoryMiB      = 1024
	minDiskGiB        = 4
	// The snapshot timer looks every 10 minutes whether one is due, so a
	// shorter interval could not be kept.
	minSnapshotInterval = 10 * time.Minute
	maxSnapshotsKept    = 1000

	// MinLeafLifetime: clients that read their certificate from files
	// (client-go) switch to a renewed one within 5 minutes, and machines
	// renew when a third of the lifetime is left; below 20m a client could
	// still present the old certificate when it expires.
	MinLeafLifetime = 20 * time.Minute
)

var dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// slirpNet is the network QEMU's user-mode NIC uses inside every local VM.
var slirpNet = netip.MustParsePrefix("10.0.2.0/24")

// Validate checks a defaulted config and returns every problem found.
func Validate(c *Cluster) ErrorList {
	var e errs
	if c.APIVersion != APIVersion {
		e.add("apiVersion", "%q is not supported; use %s", c.APIVersion, APIVersion)
	}
	if c.Kind != Kind {
		e.add("kind", "%q is not supported; use %s", c.Kind, Kind)
	}
	validateDNSLabel(&e, "metadata.name", c.Metadata.Name, maxClusterNameLen)
	if v := c.Spec.KubernetesVersion; !slices.Contains(SupportedKubernetesVersions(), v) {
		e.add("spec.kubernetesVersion", "%q is not supported; supported: %s", v, strings.Join(SupportedKubernetesVersions(), ", "))
	}

	minMasters := 1
	if c.Spec.Target.Provider == ProviderMetal {
		minMasters = 0 // validateMetal names the missing master
	}
	masters := validatePool(&e, "spec.masters", c.Spec.Masters, string(RoleMaster), minMasters, maxMasters)
	if n := len(masters); n > 0 && n%2 == 0 {
		e.add("spec.masters", "%d masters is an even number; etcd needs an odd number (1, 3, 5) to keep a quorum", n)
	}
	nodes := validatePool(&e, "spec.nodes", c.Spec.Nodes, string(RoleNode), 0, maxNodes)
	seen := map[string]string{}
	for _, m := range append(slices.Clone(masters), nodes...) {
		if prev, ok := seen[m.name]; ok {
			e.add(m.path, "duplicate machine name %q (also %s)", m.name, prev)
			continue
		}
		seen[m.name] = m.path
	}

	// The logging aggregator and the UI find the log store and Prometheus by
	// their cluster DNS names.
	if !Enabled(c.Spec.Addons.DNS) {
		for _, a := range []struct {
			field string
			on    *bool
		}{{"spec.addons.logging", c.Spec.Addons.Logging}, {"spec.addons.ui", c.Spec.Addons.UI}} {
			if Enabled(a.on) {
				e.add(a.field, "needs spec.addons.dns (it finds its peers by cluster DNS names); turn dns on or this off")
			}
		}
	}
	validateNetwork(&e, c, len(masters), len(nodes))
	levels := []string{PodSecurityPrivileged, PodSecurityBaseline, PodSecurityRestricted}
	ps := c.Spec.PodSecurity
	for _, m := range []struct{ field, level string }{{"enforce", ps.Enforce}, {"audit", ps.Audit}, {"warn", ps.Warn}} {
		if !slices.Contains(levels, m.level) {
			e.add("spec.podSecurity."+m.field, "%q is not one of %s", m.level, strings.Join(levels, ", "))
		}
	}
	validateEtcd(&e, c.Spec.Etcd)
	validateTarget(&e, c)
	if d, err := time.ParseDuration(c.Spec.PKI.LeafLifetime); err != nil {
		e.add("spec.pki.leafLifetime", "%q is not a duration (for example 8760h, or 30m for a renewal test)", c.Spec.PKI.LeafLifetime)
	} else if d < MinLeafLifetime {
		e.add("spec.pki.leafLifetime", "%s is shorter than the minimum of %s (clients take up to 5 minutes to switch to a renewed certificate)", c.Spec.PKI.LeafLifetime, strings.TrimSuffix(MinLeafLifetime.String(), "0s"))
	}
	for i, k := range c.Spec.SSH.AuthorizedKeys {
		f := strings.Fields(k)
		if len(f) < 2 || !(strings.HasPrefix(f[0], "ssh-") || strings.HasPrefix(f[0], "ecdsa-") || strings.HasPrefix(f[0], "sk-")) {
			e.add(fmt.Sprintf("spec.ssh.authorizedKeys[%d]", i), "is not an OpenSSH public key (expected \"ssh-ed25519 AAAA... comment\")")
		}
	}
	return e.list
}

func validateDNSLabel(e *errs, path, v string, maxLen int) bool {
	switch {
	case v == "":
		e.add(path, "is required")
	case len(v) > maxLen:
		e.add(path, "%q is longer than %d characters", v, maxLen)
	case !dnsLabelRE.MatchString(v):
		e.add(path, "%q is not a valid DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)", v)
	default:
		return true
	}
	return false
}

type pooledName struct{ path, name string }

// validatePool checks one machine pool and returns its valid names with the
// field path each came from.
func validatePool(e *errs, path string, p MachinePool, prefix string, minCount, maxCount int) []pooledName {
	var names []pooledName
	switch {
	case len(p.Names) > 0:
		if p.Count != nil && *p.Count != len(p.Names) {
			e.add(path+".count", "is %d but %d names are listed; set count or names, not both", *p.Count, len(p.Names))
		}
		for i, n := range p.Names {
			np := fmt.Sprintf("%s.names[%d]", path, i)
			if validateDNSLabel(e, np, n, 63) {
				names = append(names, pooledName{np, n})
			}
		}
	case p.Count != nil:
		if *p.Count < minCount || *p.Count > maxCount {
			e.add(path+".count", "%d is out of range; use %d to %d", *p.Count, minCount, maxCount)
			return nil
		}
		for _, n := range p.names(prefix) {
			names = append(names, pooledName{path + ".count", n})
		}
	}
	if len(names) > maxCount {
		e.add(path+".names", "%d machines is more than the %d supported", len(names), maxCount)
	}
	if len(names) < minCount && len(p.Names) == 0 && p.Count == nil {
		e.add(path, "needs at least %d machine", minCount)
	}
	if p.CPUs < 1 || p.CPUs > 64 {
		e.add(path+".cpus", "%d is out of range; use 1 to 64", p.CPUs)
	}
	if q, err := resource.ParseQuantity(p.Memory); err != nil {
		e.add(path+".memory", "%q is not a quantity (for example 2Gi)", p.Memory)
	} else if q.Value()>>20 < minMemoryMiB {
		e.add(path+".memory", "%q is less than the %dMi a machine needs", p.Memory, minMemoryMiB)
	}
	if q, err := resource.ParseQuantity(p.DiskSize); err != nil {
		e.add(path+".diskSize", "%q is not a quantity (for example 10Gi)", p.DiskSize)
	} else if q.Value()>>30 < minDiskGiB {
		e.add(path+".diskSize", "%q is less than the %dGi the image needs", p.DiskSize, minDiskGiB)
	}
	if p.Firmware != FirmwareUEFI && p.Firmware != FirmwareBIOS {
		e.add(path+".firmware", "%q is not a firmware; use %s or %s", p.Firmware, FirmwareUEFI, FirmwareBIOS)
	}
	return names
}

func validateNetwork(e *errs, c *Cluster, masters, nodes int) {
	n := c.Spec.Network
	type cidr struct {
		path   string
		prefix netip.Prefix
	}
	var nets []cidr
	parse := func(path, v string) (netip.Prefix, bool) {
		p, err := netip.ParsePrefix(v)
		switch {
		case err != nil:
			e.add(path, "%q is not a CIDR", v)
		case !p.Addr().Is4():
			e.add(path, "%q is IPv6; only IPv4 is supported", v)
		case p.Masked() != p:
			e.add(path, "%q has host bits set; use %s", v, p.Masked())
		default:
			nets = append(nets, cidr{path, p})
			return p, true
		}
		return netip.Prefix{}, false
	}
	if p, ok := parse("spec.network.machineCIDR", n.MachineCIDR); ok {
		last := firstNodeHost + nodes - 1
		if masters > firstNodeHost-firstMasterHost {
			last = firstNodeHost + nodes
		}
		if size := 1 << (32 - p.Bits()); last >= size-1 {
			e.add("spec.network.machineCIDR", "%q is too small for %d nodes (nodes take .%d onwards); use a /24 or larger", n.MachineCIDR, nodes, firstNodeHost)
		}
	}
	if p, ok := parse("spec.network.podCIDR", n.PodCIDR); ok {
		switch {
		case n.NodeCIDRMaskSize <= p.Bits() || n.NodeCIDRMaskSize > 28:
			e.add("spec.network.nodeCIDRMaskSize", "%d must be longer than the pod CIDR's /%d and at most 28", n.NodeCIDRMaskSize, p.Bits())
		case n.NodeCIDRMaskSize-p.Bits() < 30 && 1<<(n.NodeCIDRMaskSize-p.Bits()) < masters+nodes:
			e.add("spec.network.podCIDR", "%q holds only %d /%d node blocks for %d machines", n.PodCIDR, 1<<(n.NodeCIDRMaskSize-p.Bits()), n.NodeCIDRMaskSize, masters+nodes)
		}
	}
	if p, ok := parse("spec.network.serviceCIDR", n.ServiceCIDR); ok && p.Bits() > 28 {
		e.add("spec.network.serviceCIDR", "%q is too small; use /28 or larger (the DNS service takes the tenth address)", n.ServiceCIDR)
	}
	for i := range nets {
		for j := i + 1; j < len(nets); j++ {
			if nets[i].prefix.Overlaps(nets[j].prefix) {
				e.add(nets[j].path, "%s overlaps %s %s", nets[j].prefix, nets[i].path, nets[i].prefix)
			}
		}
	}
	if c.Spec.Target.Provider == ProviderLocal {
		for _, x := range nets {
			if x.prefix.Overlaps(slirpNet) {
				e.add(x.path, "%s overlaps %s, which QEMU's user network uses on the local target", x.prefix, slirpNet)
			}
		}
	}
	if d := n.DNSDomain; len(d) > 253 || !validDNSSubdomain(d) {
		e.add("spec.network.dnsDomain", "%q is not a valid DNS domain (lowercase labels separated by dots)", d)
	}
}

func validDNSSubdomain(d string) bool {
	if d == "" {
		return false
	}
	for _, l := range strings.Split(d, ".") {
		if len(l) > 63 || !dnsLabelRE.MatchString(l) {
			return false
		}
	}
	return true
}

func validateEtcd(e *errs, s Etcd) {
	d, err := time.ParseDuration(s.SnapshotInterval)
	switch {
	case err != nil:
		e.add("spec.etcd.snapshotInterval", "%q is not a duration (for example 1h or 30m; 0s turns snapshots off)", s.SnapshotInterval)
	case d < 0:
		e.add("spec.etcd.snapshotInterval", "%s is negative; use at least 10m, or 0s to turn snapshots off", s.SnapshotInterval)
	case d > 0 && d < minSnapshotInterval:
		e.add("spec.etcd.snapshotInterval", "%s is too short; use at least 10m, or 0s to turn snapshots off", s.SnapshotInterval)
	}
	if k := s.SnapshotsKept; k != nil && (*k < 1 || *k > maxSnapshotsKept) {
		e.add("spec.etcd.snapshotsKept", "%d is out of range; use 1 to %d", *k, maxSnapshotsKept)
	}
}

func validateTarget(e *errs, c *Cluster) {
	t := c.Spec.Target
	switch t.Provider {
	case ProviderLocal:
		if l := t.Local; l != nil {
			if l.APIServerPort != 0 && (l.APIServerPort < 1024 || l.APIServerPort > 65535) {
				e.add("spec.target.local.apiServerPort", "%d is out of range; use 0 (pick a free port) or 1024 to 65535", l.APIServerPort)
			}
			if !slices.Contains([]string{"auto", "kvm", "tcg"}, l.Accelerator) {
				e.add("spec.target.local.accelerator", "%q is not one of auto, kvm, tcg", l.Accelerator)
			}
		}
	case ProviderAWS:
		validateAWS(e, c)
	case ProviderMetal:
		validateMetal(e, c)
	case ProviderGCP:
		validateGCP(e, c)
	default:
		e.add("spec.target.provider", "%q is not one of local, metal, aws, gcp", t.Provider)
	}
	for _, other := range []struct {
		name string
		set  bool
	}{{ProviderLocal, t.Local != nil}, {ProviderMetal, t.Metal != nil}, {ProviderAWS, t.AWS != nil}, {ProviderGCP, t.GCP != nil}} {
		if other.set && other.name != t.Provider && t.Provider != "" {
			e.add("spec.target."+other.name, "is set but spec.target.provider is %q", t.Provider)
		}
	}
}

// validateMetal checks the metal target: the boot server's address, the
// machines' MACs, disks, addresses and firmware, and that the masters and
// nodes are exactly its machines of each role.
func validateMetal(e *errs, c *Cluster) {
	const path = "spec.target.metal"
	mt := c.Spec.Target.Metal
	if mt == nil {
		e.add(path, "is required when spec.target.provider is metal: list the machines (name, role, mac) and the boot server's address")
		return
	}
	network, netErr := netip.ParsePrefix(c.Spec.Network.MachineCIDR)
	netOK := netErr == nil
	inNetwork := func(field string, a netip.Addr) bool {
		if !netOK {
			return true // validateNetwork reported the CIDR
		}
		last := network.Masked().Addr()
		for range 1<<(32-network.Bits()) - 1 {
			last = last.Next()
		}
		switch {
		case !network.Contains(a):
			e.add(field, "%s is outside spec.network.machineCIDR %s", a, network)
		case a == network.Masked().Addr() || a == last:
			e.add(field, "%s is the network's own or broadcast address", a)
		default:
			return true
		}
		return false
	}
	ipv4 := func(field, v string) (netip.Addr, bool) {
		a, err := netip.ParseAddr(v)
		if err != nil || !a.Is4() {
			e.add(field, "%q is not an IPv4 address", v)
			return netip.Addr{}, false
		}
		return a, true
	}

	var server netip.Addr
	switch {
	case mt.Server == "":
		e.add(path+".server", "is required: the address the machines reach this host's boot server at (for example 192.168.10.2:8080)")
	case mt.ServerAddr() == "":
		e.add(path+".server", "%q is not an IPv4 address with an optional port (for example 192.168.10.2:8080)", mt.Server)
	default:
		ap := netip.MustParseAddrPort(mt.ServerAddr())
		if server = ap.Addr(); !server.Is4() {
			e.add(path+".server", "%q is IPv6; only IPv4 is supported", mt.Server)
		} else if ap.Port() == 0 {
			e.add(path+".server", "%q has port 0; leave the port out for %d", mt.Server, DefaultMetalPort)
		}
	}
	var gateway netip.Addr
	if a, ok := ipv4(path+".gateway", mt.Gateway); ok && inNetwork(path+".gateway", a) {
		gateway = a
	}
	for i, d := range mt.DNS {
		ipv4(fmt.Sprintf("%s.dns[%d]", path, i), d)
	}
	if d, err := time.ParseDuration(mt.BootstrapTokenTTL); err != nil || d < 10*time.Minute || d > 24*time.Hour {
		e.add(path+".bootstrapTokenTTL", "%q is not a duration from 10m to 24h (the nodes' bootstrap token lasts this long after up)", mt.BootstrapTokenTTL)
	}
	if len(mt.Machines) == 0 {
		e.add(path+".machines", "is empty: list each machine (name, role, mac)")
		return
	}

	names, macs, addrs := map[string]string{}, map[string]string{}, map[netip.Addr]string{}
	byRole := map[Role][]string{}
	var masterAddrs []string
	for i, m := range mt.Machines {
		mp := fmt.Sprintf("%s.machines[%d]", path, i)
		if validateDNSLabel(e, mp+".name", m.Name, 63) {
			if prev, dup := names[m.Name]; dup {
				e.add(mp+".name", "%q repeats %s", m.Name, prev)
			}
			names[m.Name] = mp
		}
		switch m.Role {
		case RoleMaster, RoleNode:
			byRole[m.Role] = append(byRole[m.Role], m.Name)
		default:
			e.add(mp+".role", "%q is not one of master, node", m.Role)
		}
		if hw, err := net.ParseMAC(m.MAC); err != nil || len(hw) != 6 {
			e.add(mp+".mac", "%q is not a MAC address; write six hexadecimal pairs separated by colons (52:54:00:12:34:56)", m.MAC)
		} else if hw[0]&1 == 1 || bytes.Equal(hw, make(net.HardwareAddr, 6)) {
			e.add(mp+".mac", "%s is a multicast or all-zero address, not a network interface's", m.MAC)
		} else {
			mac := hw.String()
			if prev, dup := macs[mac]; dup {
				e.add(mp+".mac", "%s repeats %s: each machine boots from its own interface", mac, prev)
			}
			macs[mac] = mp
		}
		if m.Disk != "" && (!strings.HasPrefix(m.Disk, "/dev/") || strings.ContainsAny(m.Disk, " \t\n")) {
			e.add(mp+".disk", "%q is not a device path (for example /dev/sda or /dev/disk/by-id/...); leave it out for the first disk that is not removable", m.Disk)
		}
		if a, ok := ipv4(mp+".address", m.Address); ok && inNetwork(mp+".address", a) {
			switch prev, dup := addrs[a]; {
			case dup:
				e.add(mp+".address", "%s repeats %s", a, prev)
			case a == gateway:
				e.add(mp+".address", "%s is the gateway's address", a)
			case a == server:
				e.add(mp+".address", "%s is the boot server's address", a)
			}
			addrs[a] = mp
			if m.Role == RoleMaster {
				masterAddrs = append(masterAddrs, a.String())
			}
		}
		if m.Firmware != FirmwareUEFI && m.Firmware != FirmwareBIOS && (m.Firmware != "" || m.Role == RoleMaster || m.Role == RoleNode) {
			e.add(mp+".firmware", "%q is not a firmware; use %s or %s", m.Firmware, FirmwareUEFI, FirmwareBIOS)
		}
	}
	if len(byRole[RoleMaster]) == 0 {
		e.add(path+".machines", "no machine has role master; a cluster needs 1, 3 or 5")
	}
	if mt.APIEndpoint != "" && len(masterAddrs) > 0 && !slices.Contains(masterAddrs, mt.APIEndpoint) {
		e.add(path+".apiEndpoint", "%q is not a master's address (%s); a virtual address needs HA, which the metal target does not have yet", mt.APIEndpoint, strings.Join(masterAddrs, ", "))
	}
	// spec.masters and spec.nodes, when written, must name the same machines.
	for _, p := range []struct {
		field string
		pool  MachinePool
		role  Role
	}{{"spec.masters", c.Spec.Masters, RoleMaster}, {"spec.nodes", c.Spec.Nodes, RoleNode}} {
		listed := p.pool.names(string(p.role))
		if !slices.Equal(listed, byRole[p.role]) && (len(listed) > 0 || len(byRole[p.role]) > 0) {
			e.add(p.field, "names %v but spec.target.metal.machines has %v with role %s; leave %s out on the metal target", listed, byRole[p.role], p.role, p.field)
		}
	}
}

var (
	awsRegion = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-[0-9]$`)
	awsZone   = regexp.MustCompile(`^[a-z]{2}(-gov)?-[a-z]+-[0-9][a-z]$`)
	gcpZone   = regexp.MustCompile(`^[a-z]+-[a-z]+[0-9]-[a-z]$`)
	// GCP project ids: 6 to 30 lower-case letters, digits and hyphens,
	// starting with a letter.
	gcpProject = regexp.MustCompile(`^[a-z][a-z0-9-]{4,28}[a-z0-9]$`)
	gcpLabel   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,62}$`)
)

func validateAWS(e *errs, c *Cluster) {
	a := c.Spec.Target.AWS
	if a == nil {
		e.add("spec.target.aws", "is required when spec.target.provider is aws (at least region and allowedCIDRs)")
		return
	}
	const p = "spec.target.aws"
	switch {
	case a.Region == "":
		e.add(p+".region", "is required when spec.target.provider is aws, e.g. us-east-1")
	case !awsRegion.MatchString(a.Region):
		e.add(p+".region", "%q is not an AWS region name such as us-east-1", a.Region)
	}
	if a.Zone != "" && (!awsZone.MatchString(a.Zone) || !strings.HasPrefix(a.Zone, a.Region)) {
		e.add(p+".zone", "%q is not an availability zone of region %q, such as %sa", a.Zone, a.Region, a.Region)
	}
	for _, f := range []struct{ field, v string }{{"instanceType", a.InstanceType}, {"masterInstanceType", a.MasterInstanceType}, {"nodeInstanceType", a.NodeInstanceType}} {
		if f.v == "" {
			continue
		}
		if _, err := cloud.LookupType(cloud.AWS, f.v); err != nil {
			e.add(p+"."+f.field, "%v", err)
		}
	}
	validateCloud(e, c, p, a.CloudTarget, func(k, v string) string {
		if strings.HasPrefix(k, "aws:") || strings.HasPrefix(k, "kubeup.dev/") {
			return "keys starting aws: or kubeup.dev/ are reserved"
		}
		if len(k) > 128 || len(v) > 256 {
			return "AWS tags hold keys up to 128 and values up to 256 characters"
		}
		return ""
	})
	if a.VPC != "" && !strings.HasPrefix(a.VPC, "vpc-") {
		e.add(p+".vpc", "%q is not a VPC id (vpc-…)", a.VPC)
	}
	if a.Subnet != "" && !strings.HasPrefix(a.Subnet, "subnet-") {
		e.add(p+".subnet", "%q is not a subnet id (subnet-…)", a.Subnet)
	}
}

func validateGCP(e *errs, c *Cluster) {
	g := c.Spec.Target.GCP
	if g == nil {
		e.add("spec.target.gcp", "is required when spec.target.provider is gcp (at least project, zone and allowedCIDRs)")
		return
	}
	const p = "spec.target.gcp"
	switch {
	case g.Project == "":
		e.add(p+".project", "is required when spec.target.provider is gcp: the project id (gcloud config get-value project)")
	case !gcpProject.MatchString(g.Project):
		e.add(p+".project", "%q is not a project id (6 to 30 lower-case letters, digits and hyphens)", g.Project)
	}
	switch {
	case g.Zone == "":
		e.add(p+".zone", "is required when spec.target.provider is gcp, e.g. us-central1-a")
	case !gcpZone.MatchString(g.Zone):
		e.add(p+".zone", "%q is not a zone name such as us-central1-a", g.Zone)
	}
	for _, f := range []struct{ field, v string }{{"machineType", g.MachineType}, {"masterMachineType", g.MasterMachineType}, {"nodeMachineType", g.NodeMachineType}} {
		if f.v == "" {
			continue
		}
		if _, err := cloud.LookupType(cloud.GCP, f.v); err != nil {
			e.add(p+"."+f.field, "%v", err)
		}
	}
	validateCloud(e, c, p, g.CloudTarget, func(k, v string) string {
		if !gcpLabel.MatchString(k) || (v != "" && !gcpLabel.MatchString("a"+v)) || len(v) > 63 {
			return "GCP labels are lower-case letters, digits, - and _, up to 63 characters, keys starting with a letter"
		}
		if strings.HasPrefix(k, "kubeup-") {
			return "keys starting kubeup- are reserved"
		}
		return ""
	})
}

// validateCloud checks what both clouds share: the API's allowed CIDRs
// (required, never the whole internet), SSH, an existing network, tags.
func validateCloud(e *errs, c *Cluster, p string, t CloudTarget, badTag func(k, v string) string) {
	if len(t.AllowedCIDRs) == 0 {
		e.add(p+".allowedCIDRs", "is required: the addresses that may reach the API server, e.g. [\"203.0.113.7/32\"] for your own (kubeup does not open the API to the whole internet)")
	}
	checkCIDRs := func(field string, cidrs []string) {
		for i, s := range cidrs {
			pr, err := netip.ParsePrefix(s)
			switch {
			case err != nil:
				e.add(fmt.Sprintf("%s.%s[%d]", p, field, i), "%q is not a CIDR such as 203.0.113.0/24", s)
			case pr.Bits() == 0:
				e.add(fmt.Sprintf("%s.%s[%d]", p, field, i), "%q opens the cluster to the whole internet; name the addresses that need access", s)
			case pr.Masked() != pr:
				e.add(fmt.Sprintf("%s.%s[%d]", p, field, i), "%q has host bits set; use %s", s, pr.Masked())
			}
		}
	}
	checkCIDRs("allowedCIDRs", t.AllowedCIDRs)
	checkCIDRs("sshCIDRs", t.SSHCIDRs)
	if len(t.SSHCIDRs) > 0 && len(c.Spec.SSH.AuthorizedKeys) == 0 {
		e.add(p+".sshCIDRs", "is set but spec.ssh.authorizedKeys is empty: nobody could log in")
	}
	if (t.VPC == "") != (t.Subnet == "") {
		e.add(p+".subnet", "an existing network needs both vpc and subnet")
	}
	// Each machine's pod range is fixed by its address (the cloud routes
	// to it): the pod CIDR needs a block for every machine's host number.
	if len(e.list) == 0 {
		n := c.Spec.Network
		pod, machines := netip.MustParsePrefix(n.PodCIDR), netip.MustParsePrefix(n.MachineCIDR)
		for _, m := range c.Machines() {
			if _, err := components.PodCIDRFor(pod, n.NodeCIDRMaskSize, machines, m.IP); err != nil {
				e.add("spec.network.podCIDR", "%v: on a cloud each machine's pod range is fixed by its address; use a larger pod CIDR or node mask", err)
				break
			}
		}
	}
	keys := make([]string, 0, len(t.Tags))
	for k := range t.Tags {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if why := badTag(k, t.Tags[k]); why != "" {
			e.add(p+".tags."+k, "%s", why)
		}
	}
}
