package aws

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/infra/cloud"
	"kubeup.dev/kubeup/test/golden"
)

// Type tokens.
const (
	tProvider     = "pulumi:providers:aws"
	tVpc          = "aws:ec2/vpc:Vpc"
	tSubnet       = "aws:ec2/subnet:Subnet"
	tIGW          = "aws:ec2/internetGateway:InternetGateway"
	tRouteTable   = "aws:ec2/routeTable:RouteTable"
	tRouteAssoc   = "aws:ec2/routeTableAssociation:RouteTableAssociation"
	tRoute        = "aws:ec2/route:Route"
	tSG           = "aws:ec2/securityGroup:SecurityGroup"
	tSGRule       = "aws:ec2/securityGroupRule:SecurityGroupRule"
	tSGIngress    = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
	tInstance     = "aws:ec2/instance:Instance"
	tAmi          = "aws:ec2/ami:Ami"
	tLB           = "aws:lb/loadBalancer:LoadBalancer"
	tTG           = "aws:lb/targetGroup:TargetGroup"
	tListener     = "aws:lb/listener:Listener"
	tAttach       = "aws:lb/targetGroupAttachment:TargetGroupAttachment"
	tBucket       = "aws:s3/bucketV2:BucketV2"
	tSSE          = "aws:s3/bucketServerSideEncryptionConfigurationV2:BucketServerSideEncryptionConfigurationV2"
	tPAB          = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
	tOwnership    = "aws:s3/bucketOwnershipControls:BucketOwnershipControls"
	tObject       = "aws:s3/bucketObjectv2:BucketObjectv2"
	tRole         = "aws:iam/role:Role"
	tRolePolicy   = "aws:iam/rolePolicy:RolePolicy"
	tSnapshotImpt = "aws:ebs/snapshotImport:SnapshotImport"
)

// taggable and untaggable classify every type the programs create (the
// taggable ones have a tags input in the SDK); a type in neither list fails
// TestClusterTags and TestImageTags until it is classified.
var (
	taggable   = []string{tVpc, tSubnet, tIGW, tRouteTable, tSG, tSGIngress, tInstance, tAmi, tLB, tTG, tListener, tBucket, tObject, tRole, tSnapshotImpt}
	untaggable = []string{tProvider, tRouteAssoc, tRoute, tSGRule, tAttach, tSSE, tPAB, tOwnership, tRolePolicy}
)

type rec struct {
	Type, Name string
	ID         string
	Inputs     resource.PropertyMap
	Provider   string
}

// mocks records every resource and answers getAmi.
type mocks struct {
	mu        sync.Mutex
	resources []rec
	calls     []pulumi.MockCallArgs
}

func (m *mocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := args.Name + "-id"
	state := resource.PropertyMap{}
	for k, v := range args.Inputs {
		state[k] = v
	}
	state["arn"] = resource.NewProperty("arn:mock:" + args.TypeToken + ":" + args.Name)
	switch args.TypeToken {
	case tLB:
		state["dnsName"] = resource.NewProperty(args.Name + ".elb.example")
	case tInstance:
		state["publicIp"] = resource.NewProperty("198.18.0." + strconv.Itoa(len(m.resources)))
		state["primaryNetworkInterfaceId"] = resource.NewProperty("eni-" + args.Name)
	case tBucket:
		if _, ok := state["bucket"]; !ok {
			state["bucket"] = resource.NewProperty(args.Inputs["bucketPrefix"].StringValue() + "mock")
		}
	case tRole:
		if _, ok := state["name"]; !ok {
			state["name"] = resource.NewProperty(args.Inputs["namePrefix"].StringValue() + "mock")
		}
	}
	m.resources = append(m.resources, rec{args.TypeToken, args.Name, id, args.Inputs, args.Provider})
	return id, state, nil
}

func (m *mocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, args)
	if args.Token == "aws:ec2/getAmi:getAmi" {
		return resource.PropertyMap{"id": resource.NewProperty("ami-found"), "imageId": resource.NewProperty("ami-found")}, nil
	}
	return nil, fmt.Errorf("unexpected call %s", args.Token)
}

func (m *mocks) all(typ string) []rec {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []rec
	for _, r := range m.resources {
		if r.Type == typ {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func (m *mocks) one(t *testing.T, typ, name string) rec {
	t.Helper()
	for _, r := range m.all(typ) {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no %s %q", typ, name)
	return rec{}
}

// run runs a program's body with mocks and returns what it registered and
// its outputs, resolved.
func run(t *testing.T, body func(*pulumi.Context) (pulumi.Map, error)) (*mocks, map[string]any, error) {
	t.Helper()
	m := &mocks{}
	var outs map[string]any
	resolved := make(chan struct{})
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		out, err := body(ctx)
		if err != nil {
			return err
		}
		// Outputs of plain values are not awaited by RunErr.
		out.ToMapOutput().ApplyT(func(v map[string]any) error {
			outs = v
			close(resolved)
			return nil
		})
		return nil
	}, pulumi.WithMocks("kubeup", "test", m))
	if err == nil {
		select {
		case <-resolved:
		case <-time.After(10 * time.Second):
			t.Fatal("the outputs never resolved")
		}
	}
	return m, outs, err
}

func runCluster(t *testing.T, c cloud.Cluster) (*mocks, map[string]any) {
	t.Helper()
	m, outs, err := run(t, func(ctx *pulumi.Context) (pulumi.Map, error) { return cluster(ctx, c) })
	if err != nil {
		t.Fatal(err)
	}
	return m, outs
}

const (
	masterSHA = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	nodeSHA   = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// testCluster is a cluster of masters+nodes machines: masters at
// 10.0.0.10…, nodes at 10.0.0.100…; node-0's user-data is gzip.
func testCluster(t *testing.T, masters, nodes int) cloud.Cluster {
	c := cloud.Cluster{
		Name:     "demo",
		Provider: cloud.AWS,
		Region:   "eu-west-1",
		Zone:     "eu-west-1a",
		Network:  cloud.Network{MachineCIDR: "10.0.0.0/24", PodCIDR: "10.244.0.0/16"},
		Images: map[string]cloud.Image{
			cloud.RoleMaster: {Role: cloud.RoleMaster, SHA256: masterSHA, UEFI: true, ID: "ami-0123"},
			cloud.RoleNode:   {Role: cloud.RoleNode, SHA256: nodeSHA, ID: "ami-0456"},
		},
		APIAllowedCIDRs: []string{"203.0.113.0/24"},
		Tags:            map[string]string{"team": "platform"},
	}
	add := func(role, typ string, n, base, disk int) {
		for i := range n {
			name := fmt.Sprintf("%s-%d", role, i)
			ud := []byte("#cloud-config\n# " + name + "\n" + strings.Repeat("write_files: [{path: /etc/kubeup/"+name+", content: x}]\n", 6))
			if name == "node-0" {
				var b bytes.Buffer
				zw := gzip.NewWriter(&b)
				zw.Write(ud)
				zw.Close()
				ud = b.Bytes()
			}
			c.Machines = append(c.Machines, cloud.Machine{Name: name, Role: role, Type: typ, IP: fmt.Sprintf("10.0.0.%d", base+i), DiskGiB: disk, UserData: ud,
				PodCIDR: fmt.Sprintf("10.244.%d.0/24", base+i)})
		}
	}
	add(cloud.RoleMaster, "t3.medium", masters, 10, 20)
	add(cloud.RoleNode, "t3.large", nodes, 100, 40)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func str(m resource.PropertyMap, key string) string {
	v, ok := m[resource.PropertyKey(key)]
	if !ok || !v.IsString() {
		return ""
	}
	return v.StringValue()
}

func strs(m resource.PropertyMap, key string) []string {
	v, ok := m[resource.PropertyKey(key)]
	if !ok || !v.IsArray() {
		return nil
	}
	var out []string
	for _, e := range v.ArrayValue() {
		out = append(out, e.StringValue())
	}
	return out
}

func num(m resource.PropertyMap, key string) int {
	v, ok := m[resource.PropertyKey(key)]
	if !ok || !v.IsNumber() {
		return -1
	}
	return int(v.NumberValue())
}

func boolean(m resource.PropertyMap, key string) (value, set bool) {
	v, ok := m[resource.PropertyKey(key)]
	if !ok || !v.IsBool() {
		return false, false
	}
	return v.BoolValue(), true
}

func obj(m resource.PropertyMap, key string) resource.PropertyMap {
	v, ok := m[resource.PropertyKey(key)]
	if !ok || !v.IsObject() {
		return resource.PropertyMap{}
	}
	return v.ObjectValue()
}

func objs(m resource.PropertyMap, key string) []resource.PropertyMap {
	v, ok := m[resource.PropertyKey(key)]
	if !ok || !v.IsArray() {
		return nil
	}
	var out []resource.PropertyMap
	for _, e := range v.ArrayValue() {
		out = append(out, e.ObjectValue())
	}
	return out
}

// ingressRule is one inbound flow, whichever resource type carries it.
type ingressRule struct {
	resource         string
	group            string // the receiving security group's id ("" if inline)
	protocol         string
	fromPort, toPort int
	cidrs            []string
	sourceGroup      string
}

// ingress collects the inbound rules of every resource type that can carry
// them: rule resources, inline rules, and the vpc module's rules.
func ingress(m *mocks) []ingressRule {
	var out []ingressRule
	for _, r := range m.all(tSGRule) {
		if str(r.Inputs, "type") != "ingress" {
			continue
		}
		out = append(out, ingressRule{r.Name, str(r.Inputs, "securityGroupId"), str(r.Inputs, "protocol"), num(r.Inputs, "fromPort"), num(r.Inputs, "toPort"),
			append(strs(r.Inputs, "cidrBlocks"), strs(r.Inputs, "ipv6CidrBlocks")...), str(r.Inputs, "sourceSecurityGroupId")})
	}
	for _, r := range m.all(tSG) {
		for _, in := range objs(r.Inputs, "ingress") {
			out = append(out, ingressRule{r.Name + " (inline)", r.ID, str(in, "protocol"), num(in, "fromPort"), num(in, "toPort"),
				append(strs(in, "cidrBlocks"), strs(in, "ipv6CidrBlocks")...), strings.Join(strs(in, "securityGroups"), ",")})
		}
	}
	for _, r := range m.all(tSGIngress) {
		var cidrs []string
		for _, k := range []string{"cidrIpv4", "cidrIpv6"} {
			if s := str(r.Inputs, k); s != "" {
				cidrs = append(cidrs, s)
			}
		}
		out = append(out, ingressRule{r.Name, str(r.Inputs, "securityGroupId"), str(r.Inputs, "ipProtocol"), num(r.Inputs, "fromPort"), num(r.Inputs, "toPort"),
			cidrs, str(r.Inputs, "referencedSecurityGroupId")})
	}
	return out
}

func (r ingressRule) covers(port int) bool {
	return r.protocol == "-1" || (r.protocol == "tcp" && r.fromPort <= port && port <= r.toPort)
}

const (
	masterGroup = "sg-master-id"
	nodeGroup   = "sg-node-id"
)

func groupOf(role string) string { return "sg-" + role + "-id" }

func TestClusterIngress(t *testing.T) {
	c := testCluster(t, 3, 2)
	m, _ := runCluster(t, c)
	rules := ingress(m)
	if want := len(c.Rules()) + 1; len(rules) != want {
		t.Errorf("%d ingress rules, want %d (cloud.Rules and the health checks)", len(rules), want)
	}
	for _, r := range rules {
		for _, cidr := range r.cidrs {
			if cidr == "0.0.0.0/0" || cidr == "::/0" {
				t.Errorf("%s: ingress from %s", r.resource, cidr)
			}
		}
		if r.sourceGroup == "" && len(r.cidrs) == 0 {
			t.Errorf("%s: no source", r.resource)
		}
	}
	// Each of cloud.Rules, exactly once.
	for _, want := range c.Rules() {
		proto := want.Protocol
		if proto == "all" {
			proto = "-1"
		}
		n := 0
		for _, r := range rules {
			if r.group == groupOf(want.To) && r.protocol == proto && r.fromPort == want.FromPort && r.toPort == want.ToPort &&
				slices.Equal(r.cidrs, want.FromCIDRs) && (want.FromGroup == "" && r.sourceGroup == "" || want.FromGroup != "" && r.sourceGroup == groupOf(want.FromGroup)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("rule %+v: %d resources", want, n)
		}
	}
	has := func(group string, port int, cidr string) bool {
		return slices.ContainsFunc(rules, func(r ingressRule) bool {
			return r.group == group && r.protocol == "tcp" && r.fromPort == port && r.toPort == port && slices.Equal(r.cidrs, []string{cidr})
		})
	}
	if !has(masterGroup, 6443, "203.0.113.0/24") {
		t.Error("no 6443 from the API allowed CIDR")
	}
	if !has(masterGroup, 6443, c.Network.MachineCIDR) {
		t.Error("no 6443 from the machine CIDR (load balancer health checks)")
	}
	for _, r := range rules {
		if r.protocol == "-1" {
			// Pod traffic only; it covers every port, etcd's included
			// (cloud.Rules; etcd requires client certificates).
			if !slices.Equal(r.cidrs, []string{c.Network.PodCIDR}) {
				t.Errorf("%s: all protocols from %v", r.resource, r.cidrs)
			}
			continue
		}
		if (r.covers(2379) || r.covers(2380)) && (r.group != masterGroup || r.sourceGroup != masterGroup || len(r.cidrs) > 0) {
			t.Errorf("%s: etcd's ports into %s from %v %s", r.resource, r.group, r.cidrs, r.sourceGroup)
		}
		if r.covers(22) {
			t.Errorf("%s: SSH rule without SSH CIDRs", r.resource)
		}
	}
	for _, r := range m.all(tInstance) {
		if v, _ := boolean(r.Inputs, "associatePublicIpAddress"); v {
			t.Errorf("%s: public address without SSH", r.Name)
		}
	}
	// Egress: one rule per group, and no inline rules besides.
	for _, role := range []string{cloud.RoleMaster, cloud.RoleNode} {
		e := m.one(t, tSGRule, "sg-"+role+"-out-all").Inputs
		if str(e, "type") != "egress" || str(e, "securityGroupId") != groupOf(role) {
			t.Errorf("egress of %s: %v", role, e)
		}
	}
	for _, r := range m.all(tSG) {
		if _, ok := r.Inputs["ingress"]; ok {
			t.Errorf("%s: inline ingress beside rule resources", r.Name)
		}
		if _, ok := r.Inputs["egress"]; ok {
			t.Errorf("%s: inline egress beside rule resources", r.Name)
		}
	}
}

func TestClusterSSH(t *testing.T) {
	c := testCluster(t, 1, 1)
	c.SSHAllowedCIDRs = []string{"198.51.100.0/24", "192.0.2.7/32"}
	m, outs := runCluster(t, c)
	into := map[string]bool{}
	for _, r := range ingress(m) {
		if r.protocol == "-1" || !r.covers(22) {
			continue
		}
		if !slices.Equal(r.cidrs, c.SSHAllowedCIDRs) || r.sourceGroup != "" || r.fromPort != 22 || r.toPort != 22 {
			t.Errorf("%s: port 22 from %v %s", r.resource, r.cidrs, r.sourceGroup)
		}
		into[r.group] = true
	}
	if !into[masterGroup] || !into[nodeGroup] {
		t.Errorf("SSH into %v, want both groups", into)
	}
	for _, r := range m.all(tInstance) {
		if v, _ := boolean(r.Inputs, "associatePublicIpAddress"); !v {
			t.Errorf("%s: no public address with SSH", r.Name)
		}
		if outs[r.Name+"/publicIp"] == nil {
			t.Errorf("%s: public address not exported", r.Name)
		}
	}
}

func TestClusterInstances(t *testing.T) {
	c := testCluster(t, 3, 2)
	m, outs := runCluster(t, c)
	insts := m.all(tInstance)
	if len(insts) != len(c.Machines) {
		t.Fatalf("%d instances, want %d", len(insts), len(c.Machines))
	}
	for _, mach := range c.Machines {
		in := m.one(t, tInstance, mach.Name).Inputs
		if got := str(obj(in, "metadataOptions"), "httpTokens"); got != "required" {
			t.Errorf("%s: httpTokens %q", mach.Name, got)
		}
		if got := num(obj(in, "metadataOptions"), "httpPutResponseHopLimit"); got != 1 {
			t.Errorf("%s: hop limit %d", mach.Name, got)
		}
		root := obj(in, "rootBlockDevice")
		if v, _ := boolean(root, "encrypted"); !v {
			t.Errorf("%s: root volume not encrypted", mach.Name)
		}
		if got := num(root, "volumeSize"); got != mach.DiskGiB {
			t.Errorf("%s: root volume %d GiB, want %d", mach.Name, got, mach.DiskGiB)
		}
		if got := str(root, "volumeType"); got != "gp3" {
			t.Errorf("%s: root volume type %q", mach.Name, got)
		}
		if _, ok := in["userData"]; ok {
			t.Errorf("%s: userData set (want userDataBase64 only)", mach.Name)
		}
		ud, err := base64.StdEncoding.DecodeString(str(in, "userDataBase64"))
		if err != nil {
			t.Errorf("%s: userDataBase64: %v", mach.Name, err)
		}
		if !bytes.Equal(ud, mach.UserData) || len(ud) == 0 {
			t.Errorf("%s: user-data differs from the machine's", mach.Name)
		}
		if len(ud) > 16384 {
			t.Errorf("%s: user-data is %d bytes", mach.Name, len(ud))
		}
		if got := str(in, "privateIp"); got != mach.IP {
			t.Errorf("%s: private IP %s, want %s", mach.Name, got, mach.IP)
		}
		if got, want := str(in, "ami"), c.Images[mach.Role].ID; got != want {
			t.Errorf("%s: AMI %s, want %s", mach.Name, got, want)
		}
		if got := str(in, "instanceType"); got != mach.Type {
			t.Errorf("%s: type %s, want %s", mach.Name, got, mach.Type)
		}
		if got := strs(in, "vpcSecurityGroupIds"); !slices.Equal(got, []string{groupOf(mach.Role)}) {
			t.Errorf("%s: security groups %v", mach.Name, got)
		}
		if v, set := boolean(in, "sourceDestCheck"); !set || v {
			t.Errorf("%s: source/dest check on", mach.Name)
		}
		if got := str(in, "subnetId"); got != "subnet-id" {
			t.Errorf("%s: subnet %s", mach.Name, got)
		}
		tags := obj(in, "tags")
		if str(tags, "Name") != "demo-"+mach.Name || str(tags, cloud.RoleTag) != mach.Role {
			t.Errorf("%s: tags %v", mach.Name, tags)
		}
		if outs[mach.Name+"/id"] != pulumi.ID(mach.Name+"-id") || outs[mach.Name+"/privateIp"] != mach.IP {
			t.Errorf("%s: outputs %v %v", mach.Name, outs[mach.Name+"/id"], outs[mach.Name+"/privateIp"])
		}
	}
	// The instance's user-data limit is checked before anything is created.
	c.Machines[0].UserData = make([]byte, MaxUserData+1)
	if m, _, err := run(t, func(ctx *pulumi.Context) (pulumi.Map, error) { return cluster(ctx, c) }); err == nil || len(m.resources) > 0 {
		t.Errorf("oversized user-data: err %v, %d resources", err, len(m.resources))
	}
}

// checkTags fails on a type in neither taggable nor untaggable, on a
// taggable resource without tags, and on tags without want.
func checkTags(t *testing.T, m *mocks, want map[string]string) {
	t.Helper()
	for _, r := range m.resources {
		tags, ok := r.Inputs["tags"]
		switch {
		case slices.Contains(taggable, r.Type):
			if !ok {
				t.Errorf("%s %s: no tags", r.Type, r.Name)
				continue
			}
		case slices.Contains(untaggable, r.Type):
			if ok {
				t.Errorf("%s %s: tags on a type listed as untaggable", r.Type, r.Name)
			}
			continue
		default:
			t.Errorf("%s %s: type neither taggable nor untaggable: classify it", r.Type, r.Name)
			continue
		}
		for k, v := range want {
			if got := str(tags.ObjectValue(), k); got != v {
				t.Errorf("%s %s: tag %s = %q, want %q", r.Type, r.Name, k, got, v)
			}
		}
		if r.Type == tInstance {
			if got := str(obj(r.Inputs, "volumeTags"), cloud.ClusterTag); got != want[cloud.ClusterTag] {
				t.Errorf("%s: volume tag %s = %q", r.Name, cloud.ClusterTag, got)
			}
		}
	}
}

func TestClusterTags(t *testing.T) {
	for _, ssh := range []bool{false, true} {
		c := testCluster(t, 3, 2)
		if ssh {
			c.SSHAllowedCIDRs = []string{"198.51.100.0/24"}
		}
		m, _ := runCluster(t, c)
		checkTags(t, m, map[string]string{cloud.ClusterTag: "demo", "team": "platform"})
		for _, r := range m.resources {
			if tags, ok := r.Inputs["tags"]; ok {
				if name := str(tags.ObjectValue(), "Name"); !strings.HasPrefix(name, "demo-") {
					t.Errorf("%s %s: Name tag %q", r.Type, r.Name, name)
				}
			}
		}
	}
}

func TestClusterProvider(t *testing.T) {
	m, _ := runCluster(t, testCluster(t, 1, 1))
	provs := m.all(tProvider)
	if len(provs) != 1 || provs[0].Name != "aws" || str(provs[0].Inputs, "region") != "eu-west-1" {
		t.Fatalf("providers %+v, want one named aws in eu-west-1", provs)
	}
	for _, r := range m.resources {
		if r.Type != tProvider && !strings.Contains(r.Provider, "::"+tProvider+"::aws::") {
			t.Errorf("%s %s: provider %q, want the explicit one", r.Type, r.Name, r.Provider)
		}
	}
}

func TestClusterLoadBalancer(t *testing.T) {
	c := testCluster(t, 3, 2)
	m, outs := runCluster(t, c)
	nlb := m.one(t, tLB, "lb-api").Inputs
	if str(nlb, "loadBalancerType") != "network" || !slices.Equal(strs(nlb, "subnets"), []string{"subnet-id"}) {
		t.Errorf("load balancer %v", nlb)
	}
	if internal, set := boolean(nlb, "internal"); !set || internal {
		t.Error("load balancer not internet-facing")
	}
	tg := m.one(t, tTG, "tg-api").Inputs
	if str(tg, "protocol") != "TCP" || num(tg, "port") != 6443 || str(tg, "targetType") != "instance" || str(tg, "vpcId") != "vpc-id" {
		t.Errorf("target group %v", tg)
	}
	if hc := obj(tg, "healthCheck"); str(hc, "protocol") == "" {
		t.Errorf("target group health check %v", hc)
	}
	tgArn := "arn:mock:" + tTG + ":tg-api"
	l := m.one(t, tListener, "listener-api").Inputs
	acts := objs(l, "defaultActions")
	if str(l, "protocol") != "TCP" || num(l, "port") != 6443 || str(l, "loadBalancerArn") != "arn:mock:"+tLB+":lb-api" ||
		len(acts) != 1 || str(acts[0], "type") != "forward" || str(acts[0], "targetGroupArn") != tgArn {
		t.Errorf("listener %v", l)
	}
	var targets, want []string
	for _, a := range m.all(tAttach) {
		if str(a.Inputs, "targetGroupArn") != tgArn || num(a.Inputs, "port") != 6443 {
			t.Errorf("%s: %v", a.Name, a.Inputs)
		}
		targets = append(targets, str(a.Inputs, "targetId"))
	}
	for _, mach := range c.Masters() {
		want = append(want, mach.Name+"-id")
	}
	sort.Strings(targets)
	if !slices.Equal(targets, want) {
		t.Errorf("targets %v, want the masters %v", targets, want)
	}
	if outs["apiEndpoint"] != "lb-api.elb.example" {
		t.Errorf("apiEndpoint %v", outs["apiEndpoint"])
	}
	// Created network: the load balancer waits for the internet gateway.
	if len(m.all(tVpc)) != 1 || len(m.all(tSubnet)) != 1 || len(m.all(tIGW)) != 1 {
		t.Error("network not created")
	}
	rt := m.one(t, tRouteTable, "routes").Inputs
	if routes := objs(rt, "routes"); len(routes) != 0 {
		t.Errorf("inline routes %v: they would fight the Route resources", rt)
	}
	if r := m.one(t, tRoute, "route-internet").Inputs; str(r, "routeTableId") != "routes-id" || str(r, "destinationCidrBlock") != "0.0.0.0/0" || str(r, "gatewayId") != "igw-id" {
		t.Errorf("internet route %v", r)
	}
	// Each machine's pod range goes to its network interface, and nothing else.
	if got := len(m.all(tRoute)); got != len(c.Machines)+1 {
		t.Errorf("%d routes, want one per machine and the internet's", got)
	}
	for _, mach := range c.Machines {
		r := m.one(t, tRoute, "pods-"+mach.Name).Inputs
		if str(r, "routeTableId") != "routes-id" || str(r, "destinationCidrBlock") != mach.PodCIDR || str(r, "networkInterfaceId") != "eni-"+mach.Name {
			t.Errorf("%s: pod route %v, want %s to eni-%s", mach.Name, r, mach.PodCIDR, mach.Name)
		}
	}
	sub := m.one(t, tSubnet, "subnet").Inputs
	if v, set := boolean(sub, "mapPublicIpOnLaunch"); !set || v || str(sub, "availabilityZone") != "eu-west-1a" || str(sub, "cidrBlock") != "10.0.0.0/24" {
		t.Errorf("subnet %v", sub)
	}
}

func TestClusterExistingNetwork(t *testing.T) {
	c := testCluster(t, 1, 1)
	c.Network.VPC, c.Network.Subnet = "vpc-0abc", "subnet-0def"
	m, _ := runCluster(t, c)
	for _, typ := range []string{tVpc, tSubnet, tIGW, tRouteTable, tRouteAssoc, tRoute} {
		if rs := m.all(typ); len(rs) > 0 {
			t.Errorf("%d %s with an existing network", len(rs), typ)
		}
	}
	for _, r := range m.all(tSG) {
		if got := str(r.Inputs, "vpcId"); got != "vpc-0abc" {
			t.Errorf("%s: VPC %s", r.Name, got)
		}
	}
	if got := str(m.one(t, tTG, "tg-api").Inputs, "vpcId"); got != "vpc-0abc" {
		t.Errorf("target group VPC %s", got)
	}
	if got := strs(m.one(t, tLB, "lb-api").Inputs, "subnets"); !slices.Equal(got, []string{"subnet-0def"}) {
		t.Errorf("load balancer subnets %v", got)
	}
	for _, r := range m.all(tInstance) {
		if got := str(r.Inputs, "subnetId"); got != "subnet-0def" {
			t.Errorf("%s: subnet %s", r.Name, got)
		}
	}
	if len(m.calls) > 0 {
		t.Errorf("looked up %v", m.calls)
	}
}

func TestClusterWithoutMachines(t *testing.T) {
	c := testCluster(t, 3, 2)
	c.Machines = nil
	m, outs := runCluster(t, c)
	if n := len(m.all(tInstance)) + len(m.all(tAttach)); n > 0 {
		t.Errorf("%d instances and attachments without machines", n)
	}
	for _, typ := range []string{tVpc, tSubnet, tSG, tLB, tTG, tListener} {
		if len(m.all(typ)) == 0 {
			t.Errorf("no %s", typ)
		}
	}
	if len(outs) != 1 || outs["apiEndpoint"] != "lb-api.elb.example" {
		t.Errorf("outputs %v, want only apiEndpoint", outs)
	}
}

func TestClusterInvalid(t *testing.T) {
	for name, edit := range map[string]func(*cloud.Cluster){
		"no API CIDRs":          func(c *cloud.Cluster) { c.APIAllowedCIDRs = nil },
		"API from /0":           func(c *cloud.Cluster) { c.APIAllowedCIDRs = []string{"203.0.113.0/24", "0.0.0.0/0"} },
		"SSH from ::/0":         func(c *cloud.Cluster) { c.SSHAllowedCIDRs = []string{"::/0"} },
		"no region":             func(c *cloud.Cluster) { c.Region = "" },
		"unpublished image":     func(c *cloud.Cluster) { c.Images[cloud.RoleNode] = cloud.Image{Role: cloud.RoleNode, SHA256: nodeSHA} },
		"address outside":       func(c *cloud.Cluster) { c.Machines[1].IP = "10.0.1.5" },
		"reserved address":      func(c *cloud.Cluster) { c.Machines[1].IP = "10.0.0.3" },
		"broadcast address":     func(c *cloud.Cluster) { c.Machines[1].IP = "10.0.0.255" },
		"VPC without subnet":    func(c *cloud.Cluster) { c.Network.VPC = "vpc-0abc" },
		"machine defined twice": func(c *cloud.Cluster) { c.Machines[1].Name = c.Machines[0].Name },
	} {
		t.Run(name, func(t *testing.T) {
			c := testCluster(t, 1, 1)
			edit(&c)
			m := &mocks{}
			err := pulumi.RunErr(Program(c), pulumi.WithMocks("kubeup", "test", m))
			if err == nil {
				t.Error("no error")
			}
			if len(m.resources) > 0 {
				t.Errorf("%d resources registered", len(m.resources))
			}
		})
	}
}

// testImages are a UEFI master image and a BIOS node image, in files.
func testImages(t *testing.T) []ImageSpec {
	dir := t.TempDir()
	var out []ImageSpec
	for _, img := range []cloud.Image{
		{Role: cloud.RoleMaster, SHA256: masterSHA, UEFI: true, SizeBytes: 4 << 30},
		{Role: cloud.RoleNode, SHA256: nodeSHA, SizeBytes: 4 << 30},
	} {
		img.Path = filepath.Join(dir, img.Role+".raw")
		if err := os.WriteFile(img.Path, []byte("disk of "+img.Role), 0o644); err != nil {
			t.Fatal(err)
		}
		out = append(out, ImageSpec{Image: img})
	}
	return out
}

func runImages(t *testing.T, region string, images []ImageSpec) (*mocks, map[string]any, error) {
	return run(t, func(ctx *pulumi.Context) (pulumi.Map, error) { return publish(ctx, region, images) })
}

func TestImageProgram(t *testing.T) {
	images := testImages(t)
	m, outs, err := runImages(t, "eu-west-1", images)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(m.all(tBucket)); n != 1 {
		t.Fatalf("%d buckets", n)
	}
	bucket := m.one(t, tBucket, "images")
	bucketName := "kubeup-images-eu-west-1-mock"
	if got := str(bucket.Inputs, "bucketPrefix"); got != "kubeup-images-eu-west-1-" {
		t.Errorf("bucket prefix %q", got)
	}
	sse := m.all(tSSE)
	if len(sse) != 1 || str(sse[0].Inputs, "bucket") != bucketName {
		t.Fatalf("encryption %+v", sse)
	}
	if rules := objs(sse[0].Inputs, "rules"); len(rules) != 1 || !slices.Contains([]string{"AES256", "aws:kms"}, str(obj(rules[0], "applyServerSideEncryptionByDefault"), "sseAlgorithm")) {
		t.Errorf("encryption rules %v", sse[0].Inputs)
	}
	pab := m.all(tPAB)
	if len(pab) != 1 || str(pab[0].Inputs, "bucket") != bucketName {
		t.Fatalf("public access block %+v", pab)
	}
	for _, k := range []string{"blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"} {
		if v, _ := boolean(pab[0].Inputs, k); !v {
			t.Errorf("public access block: %s not true", k)
		}
	}
	own := m.all(tOwnership)
	if len(own) != 1 || str(obj(own[0].Inputs, "rule"), "objectOwnership") != "BucketOwnerEnforced" || str(own[0].Inputs, "bucket") != bucketName {
		t.Errorf("ownership %+v", own)
	}
	roles := m.all(tRole)
	if len(roles) != 1 {
		t.Fatalf("%d roles, want one for the stack", len(roles))
	}
	trust := str(roles[0].Inputs, "assumeRolePolicy")
	for _, s := range []string{`"vmie.amazonaws.com"`, `"sts:Externalid":"vmimport"`} {
		if !strings.Contains(trust, s) {
			t.Errorf("trust policy %s lacks %s", trust, s)
		}
	}
	pol := m.all(tRolePolicy)
	if len(pol) != 1 || str(pol[0].Inputs, "role") != "kubeup-vmimport-mock" {
		t.Fatalf("role policy %+v", pol)
	}
	for _, s := range []string{`"arn:mock:` + tBucket + `:images"`, `"arn:mock:` + tBucket + `:images/*"`, "s3:GetObject", "ec2:RegisterImage", "ec2:CopySnapshot"} {
		if !strings.Contains(str(pol[0].Inputs, "policy"), s) {
			t.Errorf("role policy lacks %s", s)
		}
	}
	if n := len(m.all(tAmi)); n != len(images) {
		t.Errorf("%d AMIs, want %d", n, len(images))
	}
	for _, img := range images {
		suffix := img.Role + "-" + img.ShortDigest()
		o := m.one(t, tObject, "disk-"+suffix).Inputs
		key := img.Role + "-" + img.SHA256 + ".raw"
		if str(o, "key") != key || str(o, "bucket") != bucketName {
			t.Errorf("%s object %v", img.Role, o)
		}
		if src := o["source"]; !src.IsAsset() || src.AssetValue().Path != img.Path {
			t.Errorf("%s object source %v", img.Role, src)
		}
		s := m.one(t, tSnapshotImpt, "snapshot-"+suffix).Inputs
		dc := obj(s, "diskContainer")
		if v, _ := boolean(s, "encrypted"); !v {
			t.Errorf("%s snapshot not encrypted", img.Role)
		}
		if str(dc, "format") != "RAW" || str(obj(dc, "userBucket"), "s3Key") != key || str(obj(dc, "userBucket"), "s3Bucket") != bucketName || str(s, "roleName") != "kubeup-vmimport-mock" {
			t.Errorf("%s snapshot %v", img.Role, s)
		}
		a := m.one(t, tAmi, "ami-"+suffix).Inputs
		wantBoot := map[bool]string{true: "uefi", false: "legacy-bios"}[img.UEFI]
		if got := str(a, "name"); got != "kubeup-"+img.Role+"-"+img.SHA256[:20] {
			t.Errorf("%s AMI name %q", img.Role, got)
		}
		if got := str(a, "bootMode"); got != wantBoot {
			t.Errorf("%s AMI boot mode %q, want %q", img.Role, got, wantBoot)
		}
		if v, _ := boolean(a, "enaSupport"); !v {
			t.Errorf("%s AMI without ENA", img.Role)
		}
		if str(a, "imdsSupport") != "v2.0" || str(a, "virtualizationType") != "hvm" || str(a, "architecture") != "x86_64" || str(a, "rootDeviceName") != "/dev/xvda" {
			t.Errorf("%s AMI %v", img.Role, a)
		}
		bd := objs(a, "ebsBlockDevices")
		if len(bd) != 1 || str(bd[0], "deviceName") != "/dev/xvda" || str(bd[0], "snapshotId") != "snapshot-"+suffix+"-id" || str(bd[0], "volumeType") != "gp3" {
			t.Errorf("%s AMI block devices %v", img.Role, bd)
		}
		if got := outs["image/"+img.Role]; got != pulumi.ID("ami-"+suffix+"-id") {
			t.Errorf("output image/%s = %v", img.Role, got)
		}
		if got := outs["image/"+img.Role+"/sha256"]; got != img.SHA256 {
			t.Errorf("output image/%s/sha256 = %v", img.Role, got)
		}
	}
}

func TestImageTags(t *testing.T) {
	images := testImages(t)
	m, _, err := runImages(t, "eu-west-1", images)
	if err != nil {
		t.Fatal(err)
	}
	checkTags(t, m, map[string]string{ImagesTag: "eu-west-1"})
	for _, r := range m.resources {
		tags := obj(r.Inputs, "tags")
		if _, ok := tags[cloud.ClusterTag]; ok {
			t.Errorf("%s %s: a cluster tag on an image stack's resource", r.Type, r.Name)
		}
		if r.Type == tAmi || r.Type == tSnapshotImpt {
			role := strings.Split(r.Name, "-")[1]
			sha := map[string]string{cloud.RoleMaster: masterSHA, cloud.RoleNode: nodeSHA}[role]
			if str(tags, cloud.ImageTag) != sha || str(tags, cloud.RoleTag) != role {
				t.Errorf("%s %s: tags %v", r.Type, r.Name, tags)
			}
		}
	}
}

func TestImageAdopt(t *testing.T) {
	images := testImages(t)
	images[0].Adopt, images[1].Adopt = "ami-0aaa", "ami-0bbb"
	m, outs, err := runImages(t, "eu-west-1", images)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.resources) > 0 {
		t.Errorf("%d resources with every image adopted", len(m.resources))
	}
	if outs["image/master"] != "ami-0aaa" || outs["image/node"] != "ami-0bbb" {
		t.Errorf("outputs %v", outs)
	}
	// One adopted: only the other one is imported.
	images[1].Adopt = ""
	m, outs, err = runImages(t, "eu-west-1", images)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []string{tObject, tSnapshotImpt, tAmi} {
		if rs := m.all(typ); len(rs) != 1 || !strings.Contains(rs[0].Name, "node") {
			t.Errorf("%s: %+v", typ, rs)
		}
	}
	if outs["image/master"] != "ami-0aaa" || outs["image/node"] != pulumi.ID("ami-node-"+nodeSHA[:20]+"-id") {
		t.Errorf("outputs %v", outs)
	}
}

func TestImageInvalid(t *testing.T) {
	for name, edit := range map[string]func([]ImageSpec) (string, []ImageSpec){
		"no region":    func(i []ImageSpec) (string, []ImageSpec) { return "", i },
		"two masters":  func(i []ImageSpec) (string, []ImageSpec) { i[1].Role = cloud.RoleMaster; return "eu-west-1", i },
		"no digest":    func(i []ImageSpec) (string, []ImageSpec) { i[0].SHA256 = ""; return "eu-west-1", i },
		"adopt no AMI": func(i []ImageSpec) (string, []ImageSpec) { i[0].Adopt = "snap-1"; return "eu-west-1", i },
	} {
		t.Run(name, func(t *testing.T) {
			region, images := edit(testImages(t))
			m := &mocks{}
			if err := pulumi.RunErr(ImageProgram(region, images), pulumi.WithMocks("kubeup", "test", m)); err == nil {
				t.Error("no error")
			}
			if len(m.resources) > 0 {
				t.Errorf("%d resources registered", len(m.resources))
			}
		})
	}
}

func TestLookupArgs(t *testing.T) {
	img := cloud.Image{Role: cloud.RoleNode, SHA256: nodeSHA}
	m := &mocks{}
	var id string
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		r, err := ec2.LookupAmi(ctx, LookupArgs(img))
		if err != nil {
			return err
		}
		id = r.Id
		return nil
	}, pulumi.WithMocks("kubeup", "test", m))
	if err != nil {
		t.Fatal(err)
	}
	if id != "ami-found" || len(m.calls) != 1 {
		t.Fatalf("id %q, %d calls", id, len(m.calls))
	}
	args := m.calls[0].Args
	if got := strs(args, "owners"); !slices.Equal(got, []string{"self"}) {
		t.Errorf("owners %v", got)
	}
	if v, _ := boolean(args, "mostRecent"); !v {
		t.Error("mostRecent not set")
	}
	filters := map[string][]string{}
	for _, f := range objs(args, "filters") {
		filters[str(f, "name")] = strs(f, "values")
	}
	want := map[string][]string{"name": {"kubeup-node-" + nodeSHA[:20]}, "tag:kubeup.dev/image-sha256": {nodeSHA}}
	if fmt.Sprint(filters) != fmt.Sprint(want) {
		t.Errorf("filters %v, want %v", filters, want)
	}
}

// goldenKeys are the properties the golden files show, per type.
var goldenKeys = map[string][]string{
	tProvider:     {"region"},
	tVpc:          {"cidrBlock", "enableDnsHostnames", "enableDnsSupport"},
	tSubnet:       {"vpcId", "cidrBlock", "availabilityZone", "mapPublicIpOnLaunch"},
	tIGW:          {"vpcId"},
	tRoute:        {"routeTableId", "destinationCidrBlock", "gatewayId", "networkInterfaceId"},
	tRouteTable:   {"vpcId", "routes"},
	tRouteAssoc:   {"routeTableId", "subnetId"},
	tSG:           {"vpcId", "description"},
	tSGRule:       {"securityGroupId", "type", "protocol", "fromPort", "toPort", "cidrBlocks", "sourceSecurityGroupId", "description"},
	tLB:           {"loadBalancerType", "internal", "subnets"},
	tTG:           {"protocol", "port", "targetType", "preserveClientIp", "healthCheck"},
	tListener:     {"protocol", "port", "defaultActions"},
	tAttach:       {"targetId", "port"},
	tInstance:     {"instanceType", "ami", "privateIp", "associatePublicIpAddress", "sourceDestCheck", "vpcSecurityGroupIds", "rootBlockDevice", "metadataOptions"},
	tBucket:       {"bucketPrefix"},
	tSSE:          {"bucket", "rules"},
	tPAB:          {"bucket", "blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"},
	tOwnership:    {"bucket", "rule"},
	tObject:       {"bucket", "key"},
	tRole:         {"namePrefix"},
	tRolePolicy:   {"role"},
	tSnapshotImpt: {"diskContainer", "encrypted", "roleName"},
	tAmi:          {"name", "bootMode", "enaSupport", "imdsSupport", "ebsBlockDevices"},
}

func format(v resource.PropertyValue) string {
	switch {
	case v.IsArray():
		var parts []string
		for _, e := range v.ArrayValue() {
			parts = append(parts, format(e))
		}
		return "[" + strings.Join(parts, " ") + "]"
	case v.IsObject():
		o := v.ObjectValue()
		var parts []string
		for _, k := range o.StableKeys() {
			parts = append(parts, string(k)+"="+format(o[k]))
		}
		return "{" + strings.Join(parts, " ") + "}"
	case v.IsString():
		return strconv.Quote(v.StringValue())
	case v.IsNumber():
		return strconv.FormatFloat(v.NumberValue(), 'f', -1, 64)
	case v.IsBool():
		return strconv.FormatBool(v.BoolValue())
	}
	return v.String()
}

// render is one line per resource, sorted by type then name, then the
// outputs.
func render(t *testing.T, m *mocks, outs map[string]any) []byte {
	t.Helper()
	rs := slices.Clone(m.resources)
	sort.Slice(rs, func(i, j int) bool {
		if rs[i].Type != rs[j].Type {
			return rs[i].Type < rs[j].Type
		}
		return rs[i].Name < rs[j].Name
	})
	var b bytes.Buffer
	for _, r := range rs {
		keys, ok := goldenKeys[r.Type]
		if !ok {
			t.Errorf("no golden keys for %s", r.Type)
		}
		fmt.Fprintf(&b, "%s %s", r.Type, r.Name)
		for _, k := range keys {
			if v, ok := r.Inputs[resource.PropertyKey(k)]; ok {
				fmt.Fprintf(&b, " %s=%s", k, format(v))
			}
		}
		b.WriteByte('\n')
	}
	var keys []string
	for k := range outs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "output %s=%v\n", k, outs[k])
	}
	return b.Bytes()
}

// resourceNames lists what a run registered, to compare the exported
// program with the function the other tests run.
func resourceNames(m *mocks) []string {
	var out []string
	for _, r := range m.resources {
		out = append(out, r.Type+" "+r.Name)
	}
	sort.Strings(out)
	return out
}

func TestClusterGolden(t *testing.T) {
	c := testCluster(t, 3, 2)
	m, outs := runCluster(t, c)
	golden.Assert(t, "cluster-3+2", render(t, m, outs))

	p := &mocks{}
	if err := pulumi.RunErr(Program(c), pulumi.WithMocks("kubeup", "test", p)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resourceNames(p), resourceNames(m)) {
		t.Error("Program registers other resources than cluster")
	}
}

func TestImagesGolden(t *testing.T) {
	images := testImages(t)
	m, outs, err := runImages(t, "eu-west-1", images)
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "images", render(t, m, outs))

	p := &mocks{}
	if err := pulumi.RunErr(ImageProgram("eu-west-1", images), pulumi.WithMocks("kubeup", "test", p)); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resourceNames(p), resourceNames(m)) {
		t.Error("ImageProgram registers other resources than publish")
	}
}
