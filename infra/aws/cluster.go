// Package aws holds the AWS cloud programs: a cluster's stack (network,
// security groups, the API's network load balancer, the instances) and a
// region's images stack (the machines' AMIs, imported from raw disks).
//
// Both programs use an explicit AWS provider for their region, so the
// region never comes from the environment (AWS_REGION) or stack config.
// Credentials do: the provider's usual chain.
package aws

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"net/netip"
	"sort"
	"strconv"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/lb"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/infra/cloud"
)

// MaxUserData is EC2's limit on an instance's user-data, before base64.
const MaxUserData = 16384

const apiPort = components.APIServerPort

// Program is the inline program of a cluster's stack. Its outputs are
// "apiEndpoint" (the load balancer's DNS name) and, per machine,
// "<machine>/id" and "<machine>/privateIp" ("<machine>/publicIp" too when
// SSH is allowed).
func Program(c cloud.Cluster) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		out, err := cluster(ctx, c)
		if err != nil {
			return err
		}
		export(ctx, out)
		return nil
	}
}

// export exports out in a stable order.
func export(ctx *pulumi.Context, out pulumi.Map) {
	keys := make([]string, 0, len(out))
	for k := range out {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		ctx.Export(k, out[k])
	}
}

// check refuses what Validate does not cover and AWS would only refuse
// half way through an update.
func check(c cloud.Cluster) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.Region == "" {
		return fmt.Errorf("cloud cluster %q: no region", c.Name)
	}
	machineNet := netip.MustParsePrefix(c.Network.MachineCIDR) // Validate parsed it
	seen := map[string]bool{}
	for _, m := range c.Machines {
		switch {
		case seen[m.Name]:
			return fmt.Errorf("machine %q: defined twice", m.Name)
		case m.Role != cloud.RoleMaster && m.Role != cloud.RoleNode:
			return fmt.Errorf("machine %q: unknown role %q", m.Name, m.Role)
		case c.Images[m.Role].ID == "":
			return fmt.Errorf("machine %q: the %s image is not published (no AMI id)", m.Name, m.Role)
		case m.Type == "":
			return fmt.Errorf("machine %q: no instance type", m.Name)
		case len(m.UserData) > MaxUserData:
			return fmt.Errorf("machine %q: user-data is %d bytes, EC2 takes at most %d", m.Name, len(m.UserData), MaxUserData)
		}
		seen[m.Name] = true
		ip, err := netip.ParseAddr(m.IP)
		if err != nil || !machineNet.Contains(ip) {
			return fmt.Errorf("machine %q: address %q is not in the machine CIDR %s", m.Name, m.IP, c.Network.MachineCIDR)
		}
		if c.Network.Subnet == "" && reserved(machineNet, ip) {
			return fmt.Errorf("machine %q: AWS reserves %s in the subnet %s", m.Name, m.IP, c.Network.MachineCIDR)
		}
	}
	return nil
}

// reserved reports whether AWS keeps ip for itself in the subnet p (which
// holds ip): its first four addresses and its last.
func reserved(p netip.Prefix, ip netip.Addr) bool {
	if !ip.Is4() {
		return false
	}
	f, a := p.Masked().Addr().As4(), ip.As4()
	first, v := binary.BigEndian.Uint32(f[:]), binary.BigEndian.Uint32(a[:])
	last := first | (1<<(32-p.Bits()) - 1)
	return v-first < 4 || v == last
}

// cluster declares a cluster's resources and returns its outputs.
func cluster(ctx *pulumi.Context, c cloud.Cluster) (pulumi.Map, error) {
	if err := check(c); err != nil {
		return nil, err
	}
	out := pulumi.Map{}
	tags := func(name string, extra map[string]string) pulumi.StringMap {
		t := map[string]string{"Name": c.Name + "-" + name}
		for k, v := range extra {
			t[k] = v
		}
		return pulumi.ToStringMap(c.ClusterTags(t))
	}
	prov, err := aws.NewProvider(ctx, "aws", &aws.ProviderArgs{Region: pulumi.String(c.Region)})
	if err != nil {
		return nil, err
	}
	opt := pulumi.Provider(prov)

	// Network.
	vpcID := pulumi.String(c.Network.VPC).ToStringOutput()
	subnetID := pulumi.String(c.Network.Subnet).ToStringOutput()
	var lbDeps []pulumi.Resource
	var routeTable *ec2.RouteTable
	if c.Network.VPC == "" {
		vpc, err := ec2.NewVpc(ctx, "vpc", &ec2.VpcArgs{
			CidrBlock:          pulumi.String(c.Network.MachineCIDR),
			EnableDnsHostnames: pulumi.Bool(true),
			EnableDnsSupport:   pulumi.Bool(true),
			Tags:               tags("vpc", nil),
		}, opt)
		if err != nil {
			return nil, err
		}
		subnetArgs := &ec2.SubnetArgs{
			VpcId:               vpc.ID(),
			CidrBlock:           pulumi.String(c.Network.MachineCIDR),
			MapPublicIpOnLaunch: pulumi.Bool(false),
			Tags:                tags("subnet", nil),
		}
		if c.Zone != "" {
			subnetArgs.AvailabilityZone = pulumi.String(c.Zone)
		}
		subnet, err := ec2.NewSubnet(ctx, "subnet", subnetArgs, opt)
		if err != nil {
			return nil, err
		}
		// The load balancer is internet-facing: its subnet routes to an
		// internet gateway.
		igw, err := ec2.NewInternetGateway(ctx, "igw", &ec2.InternetGatewayArgs{VpcId: vpc.ID(), Tags: tags("igw", nil)}, opt)
		if err != nil {
			return nil, err
		}
		// Routes are resources of their own (the internet's and each
		// machine's pod range): inline routes and Route resources on one
		// table fight.
		routes, err := ec2.NewRouteTable(ctx, "routes", &ec2.RouteTableArgs{
			VpcId: vpc.ID(),
			Tags:  tags("routes", nil),
		}, opt)
		if err != nil {
			return nil, err
		}
		if _, err := ec2.NewRoute(ctx, "route-internet", &ec2.RouteArgs{
			RouteTableId: routes.ID(), DestinationCidrBlock: pulumi.String("0.0.0.0/0"), GatewayId: igw.ID(),
		}, opt); err != nil {
			return nil, err
		}
		routeTable = routes
		assoc, err := ec2.NewRouteTableAssociation(ctx, "routes-subnet", &ec2.RouteTableAssociationArgs{RouteTableId: routes.ID(), SubnetId: subnet.ID()}, opt)
		if err != nil {
			return nil, err
		}
		vpcID, subnetID = vpc.ID().ToStringOutput(), subnet.ID().ToStringOutput()
		// AWS refuses an internet-facing load balancer in a VPC without an
		// internet gateway.
		lbDeps = []pulumi.Resource{igw, assoc}
	}

	// Security groups: one per role; each rule its own resource (inline
	// rules and rule resources on one group overwrite each other).
	groups := map[string]*ec2.SecurityGroup{}
	for _, role := range []string{cloud.RoleMaster, cloud.RoleNode} {
		sg, err := ec2.NewSecurityGroup(ctx, "sg-"+role, &ec2.SecurityGroupArgs{
			VpcId:       vpcID,
			Description: pulumi.String("kubeup cluster " + c.Name + ", " + role + "s"),
			Tags:        tags(role+"s", nil),
		}, opt)
		if err != nil {
			return nil, err
		}
		groups[role] = sg
		// Security groups are stateful (replies need no rule); outbound
		// traffic is open because its destinations (registries, NTP, the
		// load balancer's public address) are not known in advance. What
		// reaches the machines is limited by the ingress rules.
		if _, err := ec2.NewSecurityGroupRule(ctx, "sg-"+role+"-out-all", &ec2.SecurityGroupRuleArgs{
			Type:            pulumi.String("egress"),
			SecurityGroupId: sg.ID(),
			Protocol:        pulumi.String("-1"),
			FromPort:        pulumi.Int(0),
			ToPort:          pulumi.Int(0),
			CidrBlocks:      pulumi.StringArray{pulumi.String("0.0.0.0/0")},
			Description:     pulumi.String("all outbound traffic"),
		}, opt); err != nil {
			return nil, err
		}
	}
	type namedRule struct {
		source string // the rule's name's last part
		cloud.Rule
	}
	var rules []namedRule
	for _, r := range c.Rules() {
		src := r.FromGroup
		if src == "" {
			src = "cidrs"
		}
		rules = append(rules, namedRule{src, r})
	}
	// The load balancer's health checks come from its private addresses in
	// the subnet (client IP preservation only keeps clients' addresses).
	rules = append(rules, namedRule{"lb-health", cloud.Rule{
		To: cloud.RoleMaster, Protocol: "tcp", FromPort: apiPort, ToPort: apiPort,
		FromCIDRs: []string{c.Network.MachineCIDR}, Why: "load balancer health checks",
	}})
	seen := map[string]bool{}
	for _, r := range rules {
		proto, ports := r.Protocol, strconv.Itoa(r.FromPort)
		if r.ToPort != r.FromPort {
			ports += "-" + strconv.Itoa(r.ToPort)
		}
		name := "sg-" + r.To + "-in-" + proto + "-" + ports + "-" + r.source
		if proto == "all" {
			proto, name = "-1", "sg-"+r.To+"-in-all-"+r.source
		}
		if seen[name] {
			return nil, fmt.Errorf("two security group rules named %s", name)
		}
		seen[name] = true
		to, ok := groups[r.To]
		if !ok {
			return nil, fmt.Errorf("rule %q: unknown group %q", r.Why, r.To)
		}
		args := &ec2.SecurityGroupRuleArgs{
			Type:            pulumi.String("ingress"),
			SecurityGroupId: to.ID(),
			Protocol:        pulumi.String(proto),
			FromPort:        pulumi.Int(r.FromPort),
			ToPort:          pulumi.Int(r.ToPort),
			Description:     pulumi.String(r.Why),
		}
		if r.FromGroup != "" {
			from, ok := groups[r.FromGroup]
			if !ok {
				return nil, fmt.Errorf("rule %q: unknown group %q", r.Why, r.FromGroup)
			}
			args.SourceSecurityGroupId = from.ID()
		} else {
			args.CidrBlocks = pulumi.ToStringArray(r.FromCIDRs)
		}
		if _, err := ec2.NewSecurityGroupRule(ctx, name, args, opt); err != nil {
			return nil, err
		}
	}

	// The API's load balancer.
	nlb, err := lb.NewLoadBalancer(ctx, "lb-api", &lb.LoadBalancerArgs{
		LoadBalancerType: pulumi.String("network"),
		Internal:         pulumi.Bool(false),
		Subnets:          pulumi.StringArray{subnetID},
		Tags:             tags("api", nil),
	}, opt, pulumi.DependsOn(lbDeps))
	if err != nil {
		return nil, err
	}
	tg, err := lb.NewTargetGroup(ctx, "tg-api", &lb.TargetGroupArgs{
		VpcId:      vpcID,
		Port:       pulumi.Int(apiPort),
		Protocol:   pulumi.String("TCP"),
		TargetType: pulumi.String("instance"),
		// The masters' group admits API clients by their own address.
		PreserveClientIp: pulumi.String("true"),
		// A replaced master's connections end after 30 s, not 300.
		DeregistrationDelay: pulumi.Int(30),
		// TCP, not HTTPS /readyz: the API server admits no anonymous
		// request, and its port stays closed until it is ready (the
		// components' start gate), so a TCP check follows readiness.
		HealthCheck: &lb.TargetGroupHealthCheckArgs{
			Protocol:           pulumi.String("TCP"),
			Port:               pulumi.String("traffic-port"),
			Interval:           pulumi.Int(10),
			HealthyThreshold:   pulumi.Int(2),
			UnhealthyThreshold: pulumi.Int(2),
		},
		Tags: tags("api", nil),
	}, opt)
	if err != nil {
		return nil, err
	}
	if _, err := lb.NewListener(ctx, "listener-api", &lb.ListenerArgs{
		LoadBalancerArn: nlb.Arn,
		Port:            pulumi.Int(apiPort),
		Protocol:        pulumi.String("TCP"),
		DefaultActions:  lb.ListenerDefaultActionArray{lb.ListenerDefaultActionArgs{Type: pulumi.String("forward"), TargetGroupArn: tg.Arn}},
		Tags:            tags("api", nil),
	}, opt); err != nil {
		return nil, err
	}
	out["apiEndpoint"] = nlb.DnsName

	// Machines.
	ssh := len(c.SSHAllowedCIDRs) > 0
	for _, m := range c.Machines {
		root := &ec2.InstanceRootBlockDeviceArgs{
			VolumeType:          pulumi.String("gp3"),
			Encrypted:           pulumi.Bool(true),
			DeleteOnTermination: pulumi.Bool(true),
		}
		if m.DiskGiB > 0 {
			root.VolumeSize = pulumi.Int(m.DiskGiB)
		}
		t := tags(m.Name, map[string]string{cloud.RoleTag: m.Role})
		inst, err := ec2.NewInstance(ctx, m.Name, &ec2.InstanceArgs{
			Ami:                 pulumi.String(c.Images[m.Role].ID),
			InstanceType:        pulumi.String(m.Type),
			SubnetId:            subnetID,
			PrivateIp:           pulumi.String(m.IP),
			VpcSecurityGroupIds: pulumi.StringArray{groups[m.Role].ID().ToStringOutput()},
			// With SSH allowed the machines are reached at public addresses.
			AssociatePublicIpAddress: pulumi.Bool(ssh),
			// Pod traffic is routed between the machines.
			SourceDestCheck: pulumi.Bool(false),
			// Base64 always: the user-data may be gzip.
			UserDataBase64: pulumi.String(base64.StdEncoding.EncodeToString(m.UserData)),
			// cloud-init reads user-data on the first boot only: a change
			// takes a new instance (as the local target replaces a VM
			// whose seed changed).
			UserDataReplaceOnChange: pulumi.Bool(true),
			MetadataOptions: &ec2.InstanceMetadataOptionsArgs{
				HttpTokens:              pulumi.String("required"),
				HttpEndpoint:            pulumi.String("enabled"),
				HttpPutResponseHopLimit: pulumi.Int(1),
			},
			RootBlockDevice: root,
			Tags:            t,
			VolumeTags:      t,
		}, opt,
			// The replacement takes the same private address: the old
			// instance goes first.
			pulumi.DeleteBeforeReplace(true))
		if err != nil {
			return nil, err
		}
		// The machine's pod range is routed to it (with an existing
		// network, whose route tables kubeup does not own, pods reach
		// each other within the subnet by the machines' own routes).
		if routeTable != nil && m.PodCIDR != "" {
			if _, err := ec2.NewRoute(ctx, "pods-"+m.Name, &ec2.RouteArgs{
				RouteTableId: routeTable.ID(), DestinationCidrBlock: pulumi.String(m.PodCIDR), NetworkInterfaceId: inst.PrimaryNetworkInterfaceId,
			}, opt); err != nil {
				return nil, err
			}
		}
		out[m.Name+"/id"] = inst.ID()
		out[m.Name+"/privateIp"] = inst.PrivateIp
		if ssh {
			out[m.Name+"/publicIp"] = inst.PublicIp
		}
		if m.Role == cloud.RoleMaster {
			if _, err := lb.NewTargetGroupAttachment(ctx, "attach-"+m.Name, &lb.TargetGroupAttachmentArgs{
				TargetGroupArn: tg.Arn,
				TargetId:       inst.ID(),
				Port:           pulumi.Int(apiPort),
			}, opt); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}
