package render

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"kubeup.dev/kubeup/cloudinit"
	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/systemd"
)

// Options are the inputs that do not come from the config.
type Options struct {
	// Images are the container references the configs use.
	Images components.Images
	// Policy prepares user-data for the target (size limit, compression);
	// the zero value is NoCloud's (no limit).
	Policy cloudinit.Policy
	// Now is the clock the metal target's bootstrap token expires by
	// (default time.Now).
	Now func() time.Time
	// EtcdJoin names the masters that replaced one of the cluster's: they
	// join the running etcd cluster (initial-cluster-state existing).
	EtcdJoin []string
	// APIEndpoint, on a cloud, is the API load balancer's URL
	// ("https://<name>:6443"): nodes, agents and kubeconfigs use it.
	APIEndpoint string
	// MasterLocalAddresses are addresses the masters accept traffic for as
	// their own: GCP's passthrough load balancer delivers packets to its
	// own address (Google's guest agent, which the image does not carry,
	// adds the same local route).
	MasterLocalAddresses []string
	// Emulated: the machines run under an emulator (QEMU's TCG, on a host
	// without KVM), where address-space layout randomisation is turned
	// off at boot. TCG keys the host code it translates by a process's
	// virtual addresses, so with randomised layouts every new process (a
	// runc, shim, CNI plugin, iptables or probe exec) is translated from
	// scratch: measured on 2026-12-07 (1+1 cluster, 2 host CPUs), each VM
	// generated ~1 GiB of host code a minute and emptied QEMU's whole
	// translation cache about once a minute; with randomisation off the
	// node generated 10-30 MiB a minute and its load fell from 10 to 6.
	// Never on KVM, bare metal or a cloud.
	Emulated bool
}

// norandmaps is the boot command of an emulated machine (Options.Emulated).
var norandmaps = []string{"sysctl", "-q", "-w", "kernel.randomize_va_space=0"}

// Machine is everything rendered for one machine.
type Machine struct {
	config.Machine
	// Files are what cloud-init writes: certificates, keys, kubeconfigs,
	// component flags and configs.
	Files []components.File
	// CloudConfig is the plain #cloud-config document; UserData is it as
	// the target receives it (compressed when the policy says so).
	CloudConfig []byte
	UserData    []byte
	MetaData    []byte
	// NetworkConfig is set for the local target, whose machines have a
	// static address on the cluster network and a DHCP management NIC.
	NetworkConfig []byte
	ClusterMAC    string
	ManagementMAC string
}

// Role is what one role's image carries from the render.
type Role struct {
	Units []systemd.Unit
	Files []components.File
}

// Result is a whole render.
type Result struct {
	Config   *config.Cluster
	Cluster  *components.Cluster
	PKI      *pki.Bundle
	Machines []Machine
}

// PKICluster is what the PKI needs from a config.
func PKICluster(c *config.Cluster) pki.Cluster {
	pc := pki.Cluster{
		Name:               c.Metadata.Name,
		DNSDomain:          c.Spec.Network.DNSDomain,
		APIServerServiceIP: net.IP(c.APIServerServiceIP().AsSlice()),
	}
	for _, m := range c.Masters() {
		pc.Masters = append(pc.Masters, pki.Machine{Name: m.Name, IP: net.IP(m.IP.AsSlice())})
	}
	return pc
}

// PKIOptions are the PKI's options from a config: the leaf lifetime.
func PKIOptions(c *config.Cluster) pki.Options {
	return pki.Options{CertLifetime: c.LeafLifetime()}
}

// ComponentsCluster is what the components need from a config.
func ComponentsCluster(c *config.Cluster, images components.Images) *components.Cluster {
	n := c.Spec.Network
	cc := &components.Cluster{
		Name:               c.Metadata.Name,
		KubernetesVersion:  c.Spec.KubernetesVersion,
		MachineCIDR:        netip.MustParsePrefix(n.MachineCIDR),
		MachineGateway:     c.MachineGateway(),
		PodCIDR:            netip.MustParsePrefix(n.PodCIDR),
		NodeCIDRMaskSize:   n.NodeCIDRMaskSize,
		ServiceCIDR:        netip.MustParsePrefix(n.ServiceCIDR),
		APIServerServiceIP: c.APIServerServiceIP(),
		DNSServiceIP:       c.DNSServiceIP(),
		DNSDomain:          n.DNSDomain,
		Images:             images,
		Addons: components.Addons{
			DNS: config.Enabled(c.Spec.Addons.DNS), Monitoring: config.Enabled(c.Spec.Addons.Monitoring),
			Logging: config.Enabled(c.Spec.Addons.Logging), UI: config.Enabled(c.Spec.Addons.UI),
		},
		// Clouds give machines a resolver; the local target is air-gapped.
		UpstreamDNS: c.Spec.Target.Provider != config.ProviderLocal,
		PodSecurity: components.PodSecurity{Enforce: c.Spec.PodSecurity.Enforce, Audit: c.Spec.PodSecurity.Audit, Warn: c.Spec.PodSecurity.Warn},
		EtcdSnapshots: components.EtcdSnapshots{
			Interval: c.Spec.Etcd.SnapshotEvery(),
			Keep:     c.Spec.Etcd.Kept(),
		},
		LeafLifetime: c.LeafLifetime(),
	}
	for _, m := range c.Masters() {
		cc.Masters = append(cc.Masters, components.Machine{Name: m.Name, Role: components.Master, IP: m.IP})
	}
	// The addons with data run on a node when there is one: under TCG a
	// 2-vCPU master running them beside the control plane stayed saturated
	// (run queue 13-35, 98% CPU pressure at rest) while the node idled at
	// 60-86%, and API requests timed out; on clouds and bare metal it keeps
	// the control plane's machines for the control plane.
	if nodes := c.Nodes(); len(nodes) > 0 {
		cc.AddonMachine = nodes[0].Name
	} else {
		cc.AddonMachine = cc.Masters[0].Name
	}
	// Nodes and agents use the first master. (With several masters this is
	// not highly available; a node-local load balancer is future work.)
	cc.APIServerEndpoint = fmt.Sprintf("https://%s:%d", cc.Masters[0].IP, components.APIServerPort)
	if mt := c.Spec.Target.Metal; c.Spec.Target.Provider == config.ProviderMetal && mt.APIEndpoint != "" {
		cc.APIServerEndpoint = fmt.Sprintf("https://%s:%d", mt.APIEndpoint, components.APIServerPort)
	}
	if p := c.Spec.Target.Provider; p == config.ProviderAWS || p == config.ProviderGCP {
		// Only the API's load balancer is open to the host.
		cc.Addons.AgentAccess = true
		cc.PodCIDRs = map[string]string{}
		for _, m := range c.Machines() {
			// Validate checked that every machine has a block.
			if pc, err := components.PodCIDRFor(cc.PodCIDR, cc.NodeCIDRMaskSize, cc.MachineCIDR, m.IP); err == nil {
				cc.PodCIDRs[m.Name] = pc.String()
			}
		}
	}
	// Seeds served over an unauthenticated network boot carry no node
	// keys: only the bootstrap token, which expires.
	cc.NodesJoin = c.Spec.Target.Provider == config.ProviderMetal
	if config.Enabled(c.Spec.Addons.Logging) {
		cc.LogForward = fmt.Sprintf("%s:%d", LogAggregatorIP(c), LogForwardPort)
	}
	return cc
}

// The log aggregator's Service has a fixed ClusterIP (the service CIDR's
// eleventh address, next to DNS's tenth) so that agents on the host network
// reach it without cluster DNS.
const LogForwardPort = 24224

// LogAggregatorIP is the ClusterIP of the log aggregator's Service.
func LogAggregatorIP(c *config.Cluster) netip.Addr { return c.DNSServiceIP().Next() }

// Roles renders the units and static files of each role's image. They do not
// depend on any cluster: one image serves every cluster.
func Roles() (map[components.Role]Role, error) {
	out := map[components.Role]Role{}
	for _, r := range components.Roles() {
		files, err := components.RoleImageFiles(r)
		if err != nil {
			return nil, err
		}
		out[r] = Role{Units: components.RoleUnits(r), Files: files}
	}
	return out, nil
}

// Render renders every machine of a valid, defaulted config.
func Render(c *config.Cluster, b *pki.Bundle, o Options) (*Result, error) {
	if o.Policy.Target == "" {
		o.Policy = cloudinit.PolicyNoCloud()
	}
	res := &Result{Config: c, Cluster: ComponentsCluster(c, o.Images), PKI: b}
	if o.APIEndpoint != "" {
		res.Cluster.APIServerEndpoint = o.APIEndpoint
	}
	secrets := components.Secrets{BootstrapToken: b.BootstrapToken.String(), EncryptionKey: b.EncryptionKey}
	if mt := c.Spec.Target.Metal; c.Spec.Target.Provider == config.ProviderMetal {
		now := time.Now
		if o.Now != nil {
			now = o.Now
		}
		secrets.BootstrapTokenExpires = now().Add(mt.TokenTTL()).Truncate(time.Second)
	}
	for _, m := range c.Machines() {
		rm, err := renderMachine(c, res.Cluster, b, secrets, m, o)
		if err != nil {
			return nil, fmt.Errorf("render %s: %w", m.Name, err)
		}
		res.Machines = append(res.Machines, rm)
	}
	return res, nil
}

func renderMachine(c *config.Cluster, cc *components.Cluster, b *pki.Bundle, secrets components.Secrets, m config.Machine, o Options) (Machine, error) {
	role := components.Role(m.Role)
	ctx := components.Context{Cluster: cc, Machine: components.Machine{Name: m.Name, Role: role, IP: m.IP,
		EtcdJoin: role == components.Master && slices.Contains(o.EtcdJoin, m.Name)}, Secrets: secrets}
	files, err := components.MachineFiles(ctx)
	if err != nil {
		return Machine{}, err
	}
	place := pki.PlaceNode
	if role == components.Master {
		place = pki.PlaceMaster
		// The addons: rendered by the addon manager from the cluster in
		// its config; rendering them here checks the cluster can have
		// them before any machine boots.
		if _, err := addons.Manifests(cc); err != nil {
			return Machine{}, err
		}
	}
	joined := map[string]bool{} // the files a joining node's agent asks for
	if cc.NodesJoin && role == components.Node {
		for _, nc := range components.NodeCredentials() {
			joined[nc.CertFile], joined[nc.KeyFile] = true, true
		}
	}
	for _, f := range b.MachineFiles(place, m.Name) {
		if joined[f.Path] {
			continue
		}
		files = append(files, components.File{Path: f.Path, Mode: f.Mode, Content: f.Content})
	}
	if err := components.SortFiles(files); err != nil {
		return Machine{}, fmt.Errorf("files of %s: %w", m.Name, err)
	}

	rm := Machine{Machine: m, Files: files, ClusterMAC: ClusterMAC(m.IP), ManagementMAC: ManagementMAC(m.IP)}
	if m.MAC != "" { // metal: the machine's own interface, and no management NIC
		rm.ClusterMAC, rm.ManagementMAC = m.MAC, ""
	}
	cfg := cloudConfig(c, m, files)
	if o.Emulated {
		cfg.BootCmd = append(cfg.BootCmd, norandmaps)
	}
	if role == components.Master {
		for _, a := range o.MasterLocalAddresses {
			cfg.BootCmd = append(cfg.BootCmd, []string{"ip", "route", "replace", "local", a + "/32", "dev", "lo", "proto", "66"})
		}
	}
	if rm.CloudConfig, err = cfg.Render(); err != nil {
		return Machine{}, err
	}
	if rm.UserData, err = cloudinit.Encode(rm.CloudConfig, o.Policy); err != nil {
		return Machine{}, err
	}
	sum := sha256.Sum256(rm.CloudConfig)
	meta := cloudinit.MetaData{
		// A new instance id whenever the user-data changes makes cloud-init
		// apply it again on an existing disk.
		InstanceID:    fmt.Sprintf("%s-%s-%s", c.Metadata.Name, m.Name, hex.EncodeToString(sum[:])[:12]),
		LocalHostname: m.Name,
	}
	if rm.MetaData, err = meta.Render(); err != nil {
		return Machine{}, err
	}
	switch c.Spec.Target.Provider {
	case config.ProviderLocal:
		if rm.NetworkConfig, err = localNetwork(c, m).Render(); err != nil {
			return Machine{}, err
		}
	case config.ProviderMetal:
		if rm.NetworkConfig, err = metalNetwork(c, m).Render(); err != nil {
			return Machine{}, err
		}
	}
	return rm, nil
}

// cloudConfig is one machine's user-data: its hostname, its files, optional
// SSH access, growing the root filesystem, and starting the role target.
func cloudConfig(c *config.Cluster, m config.Machine, files []components.File) *cloudinit.Config {
	no, yes := false, true
	cfg := &cloudinit.Config{
		Hostname:        m.Name,
		ManageEtcHosts:  cloudinit.EtcHostsLocalhost,
		DisableRoot:     &yes,
		SSHPasswordAuth: &no,
		Growpart:        &cloudinit.Growpart{Mode: cloudinit.GrowpartAuto, Devices: []string{"/"}},
		ResizeRootFS:    &yes,
		// The units are enabled in the image and ordered after cloud-init,
		// so they start by themselves; starting the target again is
		// harmless and makes the first boot explicit in the config.
		RunCmd:       [][]string{{"systemctl", "start", "--no-block", components.RoleTarget(components.Role(m.Role))}},
		FinalMessage: fmt.Sprintf("kubeup: %s (%s of cluster %s) personalised after $UPTIME s", m.Name, m.Role, c.Metadata.Name),
	}
	if keys := c.Spec.SSH.AuthorizedKeys; len(keys) > 0 {
		cfg.Users = []cloudinit.User{{Name: "kubeup", Shell: "/bin/bash", Sudo: "ALL=(ALL) NOPASSWD:ALL", SSHAuthorizedKeys: keys}}
		// The image has sshd disabled (images/rootfs): only machines
		// someone may log in to listen on port 22. runcmd runs once the
		// host keys exist.
		cfg.RunCmd = append([][]string{{"systemctl", "enable", "--now", "--no-block", SSHService}}, cfg.RunCmd...)
	}
	for _, f := range files {
		cfg.Files = append(cfg.Files, cloudinit.File{Path: f.Path, Content: f.Content, Mode: f.Mode})
	}
	return cfg
}

// SSHService is Debian's OpenSSH server unit.
const SSHService = "ssh.service"

// Interface ids in the local network-config.
const (
	ClusterNIC    = "cluster"
	ManagementNIC = "mgmt"
)

// localNetwork is the local target's network-config: a static address on
// the cluster network (an L2 segment inside QEMU) with the default route,
// and a management NIC (QEMU user networking, port forwards from the host)
// that takes an address by DHCP but neither its routes nor its DNS.
func localNetwork(c *config.Cluster, m config.Machine) *cloudinit.NetworkConfig {
	prefix := netip.MustParsePrefix(c.Spec.Network.MachineCIDR)
	no := false
	return &cloudinit.NetworkConfig{Ethernets: map[string]cloudinit.Ethernet{
		ClusterNIC: {
			Match:     &cloudinit.Match{MACAddress: ClusterMAC(m.IP)},
			Addresses: []string{netip.PrefixFrom(m.IP, prefix.Bits()).String()},
			Routes:    []cloudinit.Route{{To: "default", Via: c.MachineGateway().String()}},
		},
		ManagementNIC: {
			Match:          &cloudinit.Match{MACAddress: ManagementMAC(m.IP)},
			DHCP4:          true,
			DHCP4Overrides: &cloudinit.DHCPOverrides{UseRoutes: &no, UseDNS: &no},
		},
	}}
}

// metalNetwork is a metal machine's network-config: the interface it
// booted from (by its MAC) with its static address, the default route and
// the name servers, or with DHCP (whose server gives it its address).
func metalNetwork(c *config.Cluster, m config.Machine) *cloudinit.NetworkConfig {
	mt := c.Spec.Target.Metal
	nic := cloudinit.Ethernet{Match: &cloudinit.Match{MACAddress: m.MAC}}
	if m.DHCP {
		nic.DHCP4 = true
	} else {
		prefix := netip.MustParsePrefix(c.Spec.Network.MachineCIDR)
		nic.Addresses = []string{netip.PrefixFrom(m.IP, prefix.Bits()).String()}
		nic.Routes = []cloudinit.Route{{To: "default", Via: mt.Gateway}}
		if len(mt.DNS) > 0 {
			nic.Nameservers = &cloudinit.Nameservers{Addresses: mt.DNS}
		}
	}
	return &cloudinit.NetworkConfig{Ethernets: map[string]cloudinit.Ethernet{ClusterNIC: nic}}
}

// ClusterMAC is a machine's MAC address on the cluster network, derived from
// its address (locally administered, unicast).
func ClusterMAC(ip netip.Addr) string { return mac(0x00, ip) }

// ManagementMAC is a machine's MAC address on the management NIC.
func ManagementMAC(ip netip.Addr) string { return mac(0x01, ip) }

func mac(kind byte, ip netip.Addr) string {
	b := ip.As4()
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", kind, b[1], b[2], b[3])
}
