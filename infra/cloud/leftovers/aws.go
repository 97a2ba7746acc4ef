package leftovers

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	tagging "github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi"
	"github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi/schemas"
	taggingtypes "github.com/aws/aws-sdk-go-v2/service/resourcegroupstaggingapi/types"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"

	"kubeup.dev/kubeup/infra/cloud"
)

// LoadAWSConfig loads the SDK's default configuration (environment, shared
// files, SSO, instance role) for region ("" for the configured one).
func LoadAWSConfig(ctx context.Context, region string) (aws.Config, error) {
	var opts []func(*config.LoadOptions) error
	if region != "" {
		opts = append(opts, config.WithRegion(region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("loading AWS config: %w", err)
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("no AWS region: set the target's region or AWS_REGION")
	}
	return cfg, nil
}

const noAWSCredentials = "no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run `aws configure`"

// CheckAWSCredentials retrieves cfg's credentials (within 5 s) and says
// clearly when there are none.
func CheckAWSCredentials(ctx context.Context, cfg aws.Config) error {
	if cfg.Credentials == nil {
		return errors.New(noAWSCredentials)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return fmt.Errorf("%s: %w", noAWSCredentials, err)
	}
	if !c.HasKeys() {
		return fmt.Errorf("%s: the credentials from %q have no keys", noAWSCredentials, c.Source)
	}
	return nil
}

// AWSLister lists a cluster's leftovers in one AWS region: everything the
// Resource Groups Tagging API finds with ClusterTag, less EC2 resources that
// are gone or going (the tagging API keeps returning terminated instances
// for about an hour).
//
// The tagging API is regional: global resources (IAM, Route 53) are listed
// only when the region is us-east-1.
type AWSLister struct {
	tagging *tagging.Client
	ec2     *ec2.Client
	region  string
}

// NewAWS returns a lister using cfg (its region, credentials and, in tests,
// BaseEndpoint).
func NewAWS(cfg aws.Config) *AWSLister {
	return &AWSLister{
		// AWS JSON 1.1, the tagging API's long-standing protocol (the SDK
		// defaults to RPC v2 CBOR since v1.42.0).
		tagging: tagging.NewFromConfig(cfg, func(o *tagging.Options) {
			o.Protocol = awsjson.New11(schemas.ResourceGroupsTaggingAPI_20170126)
		}),
		ec2:    ec2.NewFromConfig(cfg),
		region: cfg.Region,
	}
}

// Leftovers implements Lister.
func (a *AWSLister) Leftovers(ctx context.Context, cluster string) ([]Resource, error) {
	if err := validCluster(cluster); err != nil {
		return nil, err
	}
	var found []Resource
	p := tagging.NewGetResourcesPaginator(a.tagging, &tagging.GetResourcesInput{
		TagFilters: []taggingtypes.TagFilter{{Key: aws.String(cloud.ClusterTag), Values: []string{cluster}}},
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("tagging GetResources: %w", err)
		}
		for _, m := range page.ResourceTagMappingList {
			r := parseARN(aws.ToString(m.ResourceARN))
			for _, t := range m.Tags {
				if aws.ToString(t.Key) == "Name" && aws.ToString(t.Value) != "" {
					r.Name = aws.ToString(t.Value)
				}
			}
			found = append(found, r)
		}
	}
	return a.dropGone(ctx, cluster, found)
}

// ec2State is an EC2 resource's state and Name tag.
type ec2State struct{ state, name string }

// dropGone drops EC2 instances, volumes and NAT gateways that EC2 no longer
// has or that are being deleted, and adds live tagged instances the tagging
// API missed.
func (a *AWSLister) dropGone(ctx context.Context, cluster string, found []Resource) ([]Resource, error) {
	has := map[string]bool{}
	for _, r := range found {
		has[r.Kind] = true
	}
	filter := clusterFilter(cluster)
	states := map[string]map[string]ec2State{} // kind → id → state
	gone := map[string][]string{
		"ec2:instance":   {string(ec2types.InstanceStateNameTerminated), string(ec2types.InstanceStateNameShuttingDown)},
		"ec2:volume":     {string(ec2types.VolumeStateDeleting), string(ec2types.VolumeStateDeleted)},
		"ec2:natgateway": {string(ec2types.NatGatewayStateDeleting), string(ec2types.NatGatewayStateDeleted)},
	}

	// Instances always: they are what costs most.
	insts, err := a.describeInstances(ctx, filter)
	if err != nil {
		return nil, err
	}
	states["ec2:instance"] = insts
	if has["ec2:volume"] {
		states["ec2:volume"] = map[string]ec2State{}
		vp := ec2.NewDescribeVolumesPaginator(a.ec2, &ec2.DescribeVolumesInput{Filters: filter})
		for vp.HasMorePages() {
			page, err := vp.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("ec2 DescribeVolumes: %w", err)
			}
			for _, v := range page.Volumes {
				states["ec2:volume"][aws.ToString(v.VolumeId)] = ec2State{string(v.State), ec2Name(v.Tags)}
			}
		}
	}
	if has["ec2:natgateway"] {
		states["ec2:natgateway"] = map[string]ec2State{}
		np := ec2.NewDescribeNatGatewaysPaginator(a.ec2, &ec2.DescribeNatGatewaysInput{Filter: filter})
		for np.HasMorePages() {
			page, err := np.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("ec2 DescribeNatGateways: %w", err)
			}
			for _, n := range page.NatGateways {
				states["ec2:natgateway"][aws.ToString(n.NatGatewayId)] = ec2State{string(n.State), ec2Name(n.Tags)}
			}
		}
	}

	live := func(kind, id string) (ec2State, bool) {
		s, ok := states[kind][id]
		if !ok {
			return s, false
		}
		for _, g := range gone[kind] {
			if s.state == g {
				return s, false
			}
		}
		return s, true
	}
	var out []Resource
	seen := map[string]bool{}
	for _, r := range found {
		if _, checked := states[r.Kind]; checked {
			if _, ok := live(r.Kind, r.ID); !ok {
				continue
			}
		}
		seen[r.Kind+" "+r.ID] = true
		out = append(out, r)
	}
	for id := range states["ec2:instance"] {
		if s, ok := live("ec2:instance", id); ok && !seen["ec2:instance "+id] {
			out = append(out, Resource{Kind: "ec2:instance", ID: id, Name: s.name})
		}
	}
	return out, nil
}

// clusterFilter selects the EC2 resources tagged with cluster.
func clusterFilter(cluster string) []ec2types.Filter {
	return []ec2types.Filter{{Name: aws.String("tag:" + cloud.ClusterTag), Values: []string{cluster}}}
}

// describeInstances maps the id of each instance filter selects to its
// state and Name tag.
func (a *AWSLister) describeInstances(ctx context.Context, filter []ec2types.Filter) (map[string]ec2State, error) {
	out := map[string]ec2State{}
	p := ec2.NewDescribeInstancesPaginator(a.ec2, &ec2.DescribeInstancesInput{Filters: filter})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("ec2 DescribeInstances: %w", err)
		}
		for _, res := range page.Reservations {
			for _, i := range res.Instances {
				var st string
				if i.State != nil {
					st = string(i.State.Name)
				}
				out[aws.ToString(i.InstanceId)] = ec2State{st, ec2Name(i.Tags)}
			}
		}
	}
	return out, nil
}

// Instances implements InstanceLister. An instance's machine name is its
// Name tag less "<cluster>-" (infra/aws names instances so); instances
// without such a name are left out, and so are terminated ones. Of two
// instances with one name (a replacement and the instance it replaces)
// the one not shutting down wins, else the greater id.
func (a *AWSLister) Instances(ctx context.Context, cluster string) (map[string]string, error) {
	if err := validCluster(cluster); err != nil {
		return nil, err
	}
	insts, err := a.describeInstances(ctx, clusterFilter(cluster))
	if err != nil {
		return nil, err
	}
	const (
		terminated   = string(ec2types.InstanceStateNameTerminated)
		shuttingDown = string(ec2types.InstanceStateNameShuttingDown)
	)
	out := map[string]string{}
	for _, id := range slices.Sorted(maps.Keys(insts)) {
		s := insts[id]
		m, ok := strings.CutPrefix(s.name, cluster+"-")
		if !ok || m == "" || s.state == terminated {
			continue
		}
		if prev, dup := out[m]; dup && prev != shuttingDown && s.state == shuttingDown {
			continue
		}
		out[m] = s.state
	}
	return out, nil
}

func ec2Name(tags []ec2types.Tag) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == "Name" {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// parseARN turns arn:partition:service:region:account:resource into a
// Resource: Kind "service:type", ID the EC2 id or else the whole ARN, Name
// the name an ARN carries (load balancers, target groups, IAM, S3). An ARN
// it cannot parse is kept whole as the ID.
func parseARN(arn string) Resource {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" {
		return Resource{Kind: "aws", ID: arn}
	}
	service, res := parts[2], parts[5]
	typ, rest := "", res
	if i := strings.IndexAny(res, "/:"); i >= 0 {
		typ, rest = res[:i], res[i+1:]
	}
	r := Resource{Kind: service, ID: arn}
	if typ != "" {
		r.Kind = service + ":" + typ
	}
	switch {
	case service == "ec2" && typ != "":
		r.ID = rest
	case service == "s3" && typ == "":
		r.Kind, r.Name = "s3:bucket", res
	case service == "elasticloadbalancing":
		// loadbalancer/net/NAME/ID, loadbalancer/app/NAME/ID,
		// loadbalancer/NAME (classic), targetgroup/NAME/ID.
		f := strings.Split(rest, "/")
		switch {
		case typ == "loadbalancer" && len(f) >= 2 && (f[0] == "net" || f[0] == "app" || f[0] == "gwy"):
			r.Name = f[1]
		case len(f) >= 1:
			r.Name = f[0]
		}
	case service == "iam":
		r.Name = rest[strings.LastIndex(rest, "/")+1:]
	}
	return r
}

// awsDelete is how the aws CLI deletes one kind, in the order to delete.
var awsDelete = []struct {
	kind, cmd string
	one       bool // one resource per command
}{
	{"elasticloadbalancing:loadbalancer", "aws elbv2 delete-load-balancer --load-balancer-arn", true},
	{"elasticloadbalancing:targetgroup", "aws elbv2 delete-target-group --target-group-arn", true},
	{"ec2:instance", "aws ec2 terminate-instances --instance-ids", false},
	{"ec2:natgateway", "aws ec2 delete-nat-gateway --nat-gateway-id", true},
	{"ec2:elastic-ip", "aws ec2 release-address --allocation-id", true},
	{"ec2:volume", "aws ec2 delete-volume --volume-id", true},
	{"ec2:network-interface", "aws ec2 delete-network-interface --network-interface-id", true},
	{"ec2:security-group", "aws ec2 delete-security-group --group-id", true},
	{"ec2:subnet", "aws ec2 delete-subnet --subnet-id", true},
	{"ec2:route-table", "aws ec2 delete-route-table --route-table-id", true},
	{"ec2:vpc", "aws ec2 delete-vpc --vpc-id", true},
	{"ec2:key-pair", "aws ec2 delete-key-pair --key-pair-id", true},
	{"ec2:launch-template", "aws ec2 delete-launch-template --launch-template-id", true},
}

func (a *AWSLister) deleteHint(cluster string, rs []Resource) string {
	var cmds []string
	covered := 0
	for _, d := range awsDelete {
		var ids []string
		for _, r := range rs {
			if r.Kind == d.kind {
				ids = append(ids, r.ID)
			}
		}
		covered += len(ids)
		switch {
		case len(ids) == 0:
		case d.one:
			for _, id := range ids {
				cmds = append(cmds, fmt.Sprintf("%s %s --region %s", d.cmd, id, a.region))
			}
		default:
			cmds = append(cmds, fmt.Sprintf("%s %s --region %s", d.cmd, strings.Join(ids, " "), a.region))
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "delete them by hand in the AWS console (Resource Groups & Tag Editor → Tag Editor, region %s, tag %s = %s) or with the aws CLI", a.region, cloud.ClusterTag, cluster)
	if len(cmds) > 0 {
		if covered < len(rs) {
			b.WriteString(" (the rest in the console)")
		}
		b.WriteString(", in this order:\n")
		for _, c := range cmds {
			b.WriteString("  " + c + "\n")
		}
	} else {
		b.WriteString(";\n")
	}
	fmt.Fprintf(&b, "then check again: aws resourcegroupstaggingapi get-resources --region %s --tag-filters Key=%s,Values=%s", a.region, cloud.ClusterTag, cluster)
	return b.String()
}
