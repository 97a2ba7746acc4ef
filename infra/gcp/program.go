// Package gcp holds the Pulumi programs of the Google Cloud target: a
// cluster's stack (network, firewall, the API load balancer, the machines)
// and a project's images stack (the published images, which outlive
// clusters).
//
// Every resource of a cluster is named kubeup-<cluster>-<what>: networks,
// subnetworks, firewalls, health checks, instance groups and backend
// services take no labels, so the name prefix is how leftovers are found
// (infra/cloud/leftovers). What takes labels carries cloud.ClusterLabel.
package gcp

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/compute"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/infra/cloud"
)

// HealthCheckRanges are the sources of Google's load-balancer health
// checks; the API's health check reaches the masters from them.
var HealthCheckRanges = []string{"35.191.0.0/16", "130.211.0.0/22", "209.85.152.0/22", "209.85.204.0/22"}

// MaxUserData is GCE's limit on one metadata value, in bytes.
const MaxUserData = 256 << 10

// nameRE is a GCP resource name (RFC 1035 label); network tags follow it too.
var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$`)

var gzipMagic = []byte{0x1f, 0x8b}

// plan is a cluster's resources as names and values, all checked before
// anything is registered: a bad cluster creates nothing.
type plan struct {
	c       cloud.Cluster
	region  string
	prefix  string // kubeup-<cluster>-
	network string // created network, "" when c.Network.VPC is used
	subnet  string // created subnetwork, "" when c.Network.Subnet is used

	firewalls []firewall

	address, healthCheck, group, backend, rule string

	machines []machine
	badName  bool
}

type firewall struct {
	name, description string
	targetTags        []string
	sourceTags        []string
	sourceRanges      []string
	allows            []allow
}

type allow struct {
	protocol string
	ports    []string
}

type machine struct {
	cloud.Machine
	name     string
	tag      string
	image    cloud.Image
	userData string
	base64   bool
}

// errs collects what is wrong, to report it at once.
type errs []string

func (e *errs) add(format string, args ...any) { *e = append(*e, fmt.Sprintf(format, args...)) }

// name is a resource's name, checked (the first bad one is reported: a
// long cluster name would make them all bad).
func (p *plan) name(e *errs, what string) string {
	n := p.prefix + what
	if !nameRE.MatchString(n) && !p.badName {
		e.add("%q is not a GCP resource name (lower-case letters, digits and -, starting with a letter, at most 63 characters)", n)
		p.badName = true
	}
	return n
}

// Tag is the network tag of a cluster's machines of a role.
func Tag(cluster, role string) string { return "kubeup-" + cluster + "-" + role }

func newPlan(c cloud.Cluster) (*plan, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	p := &plan{c: c, region: c.Region, prefix: "kubeup-" + c.Name + "-"}
	var e errs
	if c.Provider != "" && c.Provider != cloud.GCP {
		e.add("provider is %q, not %q", c.Provider, cloud.GCP)
	}
	if c.Project == "" {
		e.add("no project")
	}
	if c.Zone == "" {
		e.add("no zone")
	} else {
		if i := strings.LastIndex(c.Zone, "-"); p.region == "" && i > 0 {
			p.region = c.Zone[:i]
		}
		if !strings.HasPrefix(c.Zone, p.region+"-") {
			e.add("zone %q is not in region %q", c.Zone, p.region)
		}
	}
	for _, r := range []string{cloud.RoleMaster, cloud.RoleNode} {
		p.name(&e, r) // the network tags
	}
	if c.Network.VPC == "" {
		p.network = p.name(&e, "network")
		p.subnet = p.name(&e, "subnet")
	}
	var err error
	if p.firewalls, err = p.firewallRules(&e); err != nil {
		e.add("%v", err)
	}
	p.address = p.name(&e, "api-address")
	p.healthCheck = p.name(&e, "api-health")
	p.group = p.name(&e, "masters")
	p.backend = p.name(&e, "api-backend")
	p.rule = p.name(&e, "api")

	cidr, _ := netip.ParsePrefix(c.Network.MachineCIDR) // Validate parsed it
	seen := map[string]bool{}
	for _, m := range c.Machines {
		pm := machine{Machine: m, name: p.name(&e, m.Name), tag: Tag(c.Name, m.Role), image: c.Images[m.Role]}
		if seen[pm.name] {
			e.add("machine %q twice", m.Name)
		}
		seen[pm.name] = true
		if m.Role != cloud.RoleMaster && m.Role != cloud.RoleNode {
			e.add("machine %q: role %q", m.Name, m.Role)
		}
		if m.Type == "" {
			e.add("machine %q: no machine type", m.Name)
		}
		if ip, err := netip.ParseAddr(m.IP); err != nil || !cidr.Contains(ip) {
			e.add("machine %q: IP %q is not in the machine CIDR %s", m.Name, m.IP, c.Network.MachineCIDR)
		}
		if pm.image.ID == "" {
			e.add("machine %q: the %s image is not published (no ID)", m.Name, m.Role)
		}
		if m.DiskGiB < 0 || (m.DiskGiB > 0 && int64(m.DiskGiB)<<30 < pm.image.SizeBytes) {
			e.add("machine %q: a %d GiB disk does not hold the %d-byte image", m.Name, m.DiskGiB, pm.image.SizeBytes)
		}
		pm.userData, pm.base64 = string(m.UserData), false
		// Metadata values are text: gzip user-data goes as base64, which
		// cloud-init's GCE datasource decodes (user-data-encoding).
		if bytes.HasPrefix(m.UserData, gzipMagic) {
			pm.userData, pm.base64 = base64.StdEncoding.EncodeToString(m.UserData), true
		}
		if len(pm.userData) > MaxUserData {
			e.add("machine %q: user-data is %d bytes as metadata, over GCE's %d", m.Name, len(pm.userData), MaxUserData)
		}
		p.machines = append(p.machines, pm)
	}
	if len(e) > 0 {
		return nil, fmt.Errorf("gcp cluster %q: %s", c.Name, strings.Join(e, "; "))
	}
	return p, nil
}

// firewallRules turns c.Rules() into firewalls: the rules from one group
// into one group merge into "<to>-from-<group>"; a rule from CIDRs stays
// alone, named by its target and ports ("master-tcp-6443", "node-all"), so
// no CIDR ever gains a port another rule gave other CIDRs.
func (p *plan) firewallRules(e *errs) ([]firewall, error) {
	var out []firewall
	index := map[string]int{}
	for _, r := range p.c.Rules() {
		var key string
		f := firewall{targetTags: []string{Tag(p.c.Name, r.To)}, description: r.Why}
		switch {
		case r.FromGroup != "" && len(r.FromCIDRs) == 0:
			key = r.To + "-from-" + r.FromGroup
			f.sourceTags = []string{Tag(p.c.Name, r.FromGroup)}
		case r.FromGroup == "" && len(r.FromCIDRs) > 0:
			key = r.To + "-" + r.Protocol
			if r.Protocol != "all" {
				key += "-" + ports(r.FromPort, r.ToPort)
			}
			for _, s := range r.FromCIDRs {
				pre, err := netip.ParsePrefix(s)
				if err != nil || pre.Bits() == 0 {
					return nil, fmt.Errorf("rule %q: source %q is not a CIDR narrower than the whole internet", r.Why, s)
				}
			}
			f.sourceRanges = r.FromCIDRs
		default:
			return nil, fmt.Errorf("rule %q: not exactly one of a group and CIDRs", r.Why)
		}
		a, err := ruleAllow(r)
		if err != nil {
			return nil, err
		}
		if i, ok := index[key]; ok {
			if len(f.sourceRanges) > 0 {
				return nil, fmt.Errorf("rules %q and %q: both into %s", out[i].description, r.Why, key)
			}
			out[i].allows = merge(out[i].allows, a)
			out[i].description += "; " + r.Why
			continue
		}
		f.name = p.name(e, key)
		f.allows = []allow{a}
		index[key] = len(out)
		out = append(out, f)
	}
	// A passthrough load balancer keeps the client's address, so the API
	// rule from the allowed CIDRs covers clients; its health checks come
	// from Google's ranges.
	out = append(out, firewall{
		name:         p.name(e, "master-health-checks"),
		description:  "Kubernetes API from Google's load-balancer health checks",
		targetTags:   []string{Tag(p.c.Name, cloud.RoleMaster)},
		sourceRanges: HealthCheckRanges,
		allows:       []allow{{protocol: "tcp", ports: []string{strconv.Itoa(components.APIServerPort)}}},
	})
	return out, nil
}

func ports(from, to int) string {
	if from == to {
		return strconv.Itoa(from)
	}
	return strconv.Itoa(from) + "-" + strconv.Itoa(to)
}

func ruleAllow(r cloud.Rule) (allow, error) {
	switch r.Protocol {
	case "all":
		return allow{protocol: "all"}, nil
	case "tcp", "udp":
		if r.FromPort < 1 || r.ToPort < r.FromPort || r.ToPort > 65535 {
			return allow{}, fmt.Errorf("rule %q: ports %d-%d", r.Why, r.FromPort, r.ToPort)
		}
		return allow{protocol: r.Protocol, ports: []string{ports(r.FromPort, r.ToPort)}}, nil
	}
	return allow{}, fmt.Errorf("rule %q: protocol %q", r.Why, r.Protocol)
}

// merge adds a to allows: its ports to the entry of its protocol.
func merge(allows []allow, a allow) []allow {
	for i := range allows {
		if allows[i].protocol == a.protocol {
			if a.ports == nil || allows[i].ports == nil {
				allows[i].ports = nil // "all" ports
			} else {
				for _, p := range a.ports {
					if !slices.Contains(allows[i].ports, p) {
						allows[i].ports = append(allows[i].ports, p)
					}
				}
			}
			return allows
		}
	}
	return append(allows, a)
}

// Program is the inline program of a cluster's stack. It exports
// "apiEndpoint" (the load balancer's address) and, per machine,
// "<machine>/id" (the instance's numeric id, new when it is replaced) and
// "<machine>/privateIp".
func Program(c cloud.Cluster) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		p, err := newPlan(c)
		if err != nil {
			return err
		}
		return p.run(ctx)
	}
}

func (p *plan) run(ctx *pulumi.Context) error {
	c := p.c
	project := pulumi.String(c.Project)
	network := pulumi.StringInput(pulumi.String(c.Network.VPC))
	subnet := pulumi.StringInput(pulumi.String(c.Network.Subnet))
	if p.network != "" {
		n, err := compute.NewNetwork(ctx, p.network, &compute.NetworkArgs{
			Name:                  pulumi.String(p.network),
			Project:               project,
			AutoCreateSubnetworks: pulumi.Bool(false),
			Description:           pulumi.String("kubeup cluster " + c.Name),
		})
		if err != nil {
			return err
		}
		s, err := compute.NewSubnetwork(ctx, p.subnet, &compute.SubnetworkArgs{
			Name:                  pulumi.String(p.subnet),
			Project:               project,
			Region:                pulumi.String(p.region),
			Network:               n.SelfLink,
			IpCidrRange:           pulumi.String(c.Network.MachineCIDR),
			PrivateIpGoogleAccess: pulumi.Bool(true),
		})
		if err != nil {
			return err
		}
		network, subnet = n.SelfLink, s.SelfLink
	}

	for _, f := range p.firewalls {
		var allows compute.FirewallAllowArray
		for _, a := range f.allows {
			allows = append(allows, compute.FirewallAllowArgs{Protocol: pulumi.String(a.protocol), Ports: pulumi.ToStringArray(a.ports)})
		}
		args := &compute.FirewallArgs{
			Name:        pulumi.String(f.name),
			Project:     project,
			Network:     network,
			Description: pulumi.String(f.description),
			Direction:   pulumi.String("INGRESS"),
			Allows:      allows,
			TargetTags:  pulumi.ToStringArray(f.targetTags),
		}
		if len(f.sourceTags) > 0 {
			args.SourceTags = pulumi.ToStringArray(f.sourceTags)
		}
		if len(f.sourceRanges) > 0 {
			args.SourceRanges = pulumi.ToStringArray(f.sourceRanges)
		}
		if _, err := compute.NewFirewall(ctx, f.name, args); err != nil {
			return err
		}
	}

	labels := pulumi.ToStringMap(c.ClusterLabels(nil))
	addr, err := compute.NewAddress(ctx, p.address, &compute.AddressArgs{
		Name:        pulumi.String(p.address),
		Project:     project,
		Region:      pulumi.String(p.region),
		AddressType: pulumi.String("EXTERNAL"),
		Description: pulumi.String("Kubernetes API of kubeup cluster " + c.Name),
		Labels:      labels,
	})
	if err != nil {
		return err
	}
	ctx.Export("apiEndpoint", addr.Address)
	if len(p.machines) == 0 {
		return nil // the instance group needs the instances
	}

	var masters pulumi.StringArray
	for _, m := range p.machines {
		inst, err := p.instance(ctx, m, subnet)
		if err != nil {
			return err
		}
		if m.Role == cloud.RoleMaster {
			masters = append(masters, inst.SelfLink)
		}
		// The machine's pod range is routed to it: a GCP network delivers
		// nothing to an address no route or instance owns.
		if m.PodCIDR != "" {
			name := "kubeup-" + c.Name + "-pods-" + m.Name
			if len(name) > 63 {
				return fmt.Errorf("route name %q is longer than 63 characters", name)
			}
			if _, err := compute.NewRoute(ctx, name, &compute.RouteArgs{
				Name:                pulumi.String(name),
				Project:             project,
				Network:             network,
				DestRange:           pulumi.String(m.PodCIDR),
				NextHopInstance:     inst.SelfLink,
				NextHopInstanceZone: pulumi.String(c.Zone),
				Priority:            pulumi.Int(1000),
				Description:         pulumi.String("pods of " + m.Name + " (kubeup cluster " + c.Name + ")"),
			}); err != nil {
				return err
			}
		}
		ctx.Export(m.Name+"/id", inst.InstanceId)
		ctx.Export(m.Name+"/privateIp", inst.NetworkInterfaces.Index(pulumi.Int(0)).NetworkIp().Elem())
	}

	group, err := compute.NewInstanceGroup(ctx, p.group, &compute.InstanceGroupArgs{
		Name:        pulumi.String(p.group),
		Project:     project,
		Zone:        pulumi.String(c.Zone),
		Description: pulumi.String("masters of kubeup cluster " + c.Name),
		Instances:   masters,
	})
	if err != nil {
		return err
	}
	// TCP, not HTTPS /readyz: the API server admits no anonymous request.
	hc, err := compute.NewRegionHealthCheck(ctx, p.healthCheck, &compute.RegionHealthCheckArgs{
		Name:               pulumi.String(p.healthCheck),
		Project:            project,
		Region:             pulumi.String(p.region),
		CheckIntervalSec:   pulumi.Int(5),
		TimeoutSec:         pulumi.Int(5),
		HealthyThreshold:   pulumi.Int(2),
		UnhealthyThreshold: pulumi.Int(2),
		TcpHealthCheck:     &compute.RegionHealthCheckTcpHealthCheckArgs{Port: pulumi.Int(components.APIServerPort)},
	})
	if err != nil {
		return err
	}
	backend, err := compute.NewRegionBackendService(ctx, p.backend, &compute.RegionBackendServiceArgs{
		Name:                pulumi.String(p.backend),
		Project:             project,
		Region:              pulumi.String(p.region),
		LoadBalancingScheme: pulumi.String("EXTERNAL"),
		Protocol:            pulumi.String("TCP"),
		HealthChecks:        hc.SelfLink,
		Backends: compute.RegionBackendServiceBackendArray{compute.RegionBackendServiceBackendArgs{
			Group:         group.SelfLink,
			BalancingMode: pulumi.String("CONNECTION"),
		}},
	})
	if err != nil {
		return err
	}
	_, err = compute.NewForwardingRule(ctx, p.rule, &compute.ForwardingRuleArgs{
		Name:                pulumi.String(p.rule),
		Project:             project,
		Region:              pulumi.String(p.region),
		IpAddress:           addr.Address,
		IpProtocol:          pulumi.String("TCP"),
		PortRange:           pulumi.String(strconv.Itoa(components.APIServerPort)),
		BackendService:      backend.SelfLink,
		LoadBalancingScheme: pulumi.String("EXTERNAL"),
		Labels:              labels,
	})
	return err
}

func (p *plan) instance(ctx *pulumi.Context, m machine, subnet pulumi.StringInput) (*compute.Instance, error) {
	c := p.c
	labels := pulumi.ToStringMap(c.ClusterLabels(map[string]string{cloud.RoleLabel: m.Role}))
	disk := &compute.InstanceBootDiskInitializeParamsArgs{
		Image:  pulumi.String(m.image.ID),
		Type:   pulumi.String("pd-balanced"),
		Labels: labels,
	}
	if m.DiskGiB > 0 {
		disk.Size = pulumi.Int(m.DiskGiB)
	}
	nic := compute.InstanceNetworkInterfaceArgs{
		Subnetwork:        subnet,
		SubnetworkProject: pulumi.String(c.Project),
		NetworkIp:         pulumi.String(m.IP),
		NicType:           pulumi.String("GVNIC"),
	}
	if len(c.SSHAllowedCIDRs) > 0 {
		// An ephemeral public address, for SSH only.
		nic.AccessConfigs = compute.InstanceNetworkInterfaceAccessConfigArray{compute.InstanceNetworkInterfaceAccessConfigArgs{}}
	}
	meta := map[string]string{"user-data": m.userData}
	if m.base64 {
		meta["user-data-encoding"] = "base64"
	}
	args := &compute.InstanceArgs{
		Name:        pulumi.String(m.name),
		Project:     pulumi.String(c.Project),
		Zone:        pulumi.String(c.Zone),
		MachineType: pulumi.String(m.Type),
		BootDisk: compute.InstanceBootDiskArgs{
			InitializeParams: disk,
			AutoDelete:       pulumi.Bool(true),
		},
		NetworkInterfaces: compute.InstanceNetworkInterfaceArray{nic},
		// The user-data holds the machine's keys: secret in the state.
		Metadata: pulumi.ToSecret(pulumi.ToStringMap(meta)).(pulumi.StringMapOutput),
		// Pod traffic is routed between machines (host-gw).
		CanIpForward:       pulumi.Bool(true),
		Tags:               pulumi.StringArray{pulumi.String(m.tag)},
		Labels:             labels,
		DeletionProtection: pulumi.Bool(false),
	}
	if m.image.UEFI {
		args.ShieldedInstanceConfig = &compute.InstanceShieldedInstanceConfigArgs{
			// The image's bootloader is not signed by the keys in GCE's
			// Secure Boot database (Microsoft's), so Secure Boot stays off.
			EnableSecureBoot:          pulumi.Bool(false),
			EnableVtpm:                pulumi.Bool(true),
			EnableIntegrityMonitoring: pulumi.Bool(true),
		}
	}
	return compute.NewInstance(ctx, m.name, args)
}
