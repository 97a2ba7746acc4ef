package quota

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas"
	"github.com/aws/aws-sdk-go-v2/service/servicequotas/schemas"
	"github.com/aws/smithy-go/transport/http/protocol/awsjson"

	"kubeup.dev/kubeup/infra/cloud"
)

const awsPermissions = "the IAM permissions servicequotas:GetServiceQuota and ec2:DescribeInstances"

// AWS checks the EC2 vCPU quota of one region: the applied value of
// L-1216C47A from Service Quotas, against the vCPUs of the region's
// pending and running on-demand instances of the standard families.
type AWS struct {
	quotas *servicequotas.Client
	ec2    *ec2.Client
	region string
}

// NewAWS returns a checker using cfg (leftovers.LoadAWSConfig's; in tests,
// with BaseEndpoint and static credentials).
func NewAWS(cfg aws.Config) *AWS {
	return &AWS{
		// AWS JSON 1.1, Service Quotas' protocol and this SDK's default;
		// set so that an SDK defaulting to RPC v2 CBOR (as the tagging
		// client did) changes nothing.
		quotas: servicequotas.NewFromConfig(cfg, func(o *servicequotas.Options) {
			o.Protocol = awsjson.New11(schemas.ServiceQuotasV20190624)
		}),
		ec2:    ec2.NewFromConfig(cfg),
		region: cfg.Region,
	}
}

// Check implements Checker.
func (a *AWS) Check(ctx context.Context, c cloud.Cluster) error {
	if c.Provider != cloud.AWS {
		return fmt.Errorf("aws: cluster %q is on %q", c.Name, c.Provider)
	}
	needs, err := Needs(c)
	if err != nil {
		return fmt.Errorf("aws: %w", err)
	}
	if len(needs) == 0 {
		return nil
	}
	// Needs has only L-1216C47A on AWS.
	need := needs[0].VCPUs
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	out, err := a.quotas.GetServiceQuota(ctx, &servicequotas.GetServiceQuotaInput{
		ServiceCode: aws.String("ec2"),
		QuotaCode:   aws.String(awsQuotaCode),
	})
	if err == nil && (out.Quota == nil || out.Quota.Value == nil) {
		err = errors.New("the response has no value")
	}
	if err != nil {
		return fmt.Errorf("aws: %w: servicequotas GetServiceQuota (ec2, %s) in %s failed: %w; %s",
			ErrUnknown, awsQuotaCode, a.region, err, unknownHint(awsPermissions))
	}
	limit := *out.Quota.Value

	others, own, err := a.usage(ctx, c.Name)
	if err != nil {
		return fmt.Errorf("aws: %w: %w; %s", ErrUnknown, err, unknownHint(awsPermissions))
	}
	if float64(others+need) <= limit {
		return nil
	}
	return fmt.Errorf("aws: the cluster needs %d vCPUs of %q (%s) in %s; the quota is %s and %s: "+
		"request an increase in the Service Quotas console (https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas/%s) "+
		"or use smaller instance types",
		need, awsQuotaShort, awsQuotaCode, a.region, strconv.FormatFloat(limit, 'f', -1, 64), inUse(others, own), awsQuotaCode)
}

// usage sums the vCPUs (cores × threads per core) of the region's pending
// and running on-demand instances that count against L-1216C47A: own are
// those tagged as the cluster's, others the rest.
func (a *AWS) usage(ctx context.Context, cluster string) (others, own int, err error) {
	p := ec2.NewDescribeInstancesPaginator(a.ec2, &ec2.DescribeInstancesInput{
		Filters: []ec2types.Filter{{
			Name:   aws.String("instance-state-name"),
			Values: []string{string(ec2types.InstanceStateNamePending), string(ec2types.InstanceStateNameRunning)},
		}},
		MaxResults: aws.Int32(1000),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("ec2 DescribeInstances in %s failed: %w", a.region, err)
		}
		for _, r := range page.Reservations {
			for _, i := range r.Instances {
				typ := string(i.InstanceType)
				// Spot instances count against the spot quotas.
				if i.InstanceLifecycle == ec2types.InstanceLifecycleTypeSpot || !awsStandard(typ) {
					continue
				}
				n, err := instanceVCPUs(i)
				if err != nil {
					return 0, 0, err
				}
				if ec2Tag(i.Tags, cloud.ClusterTag) == cluster {
					own += n
				} else {
					others += n
				}
			}
		}
	}
	return others, own, nil
}

// instanceVCPUs is cores × threads per core, or the catalogue's vCPUs when
// EC2 gave no CPU options.
func instanceVCPUs(i ec2types.Instance) (int, error) {
	if o := i.CpuOptions; o != nil && o.CoreCount != nil {
		threads := int32(1)
		if o.ThreadsPerCore != nil {
			threads = *o.ThreadsPerCore
		}
		return int(*o.CoreCount * threads), nil
	}
	if t, err := cloud.LookupType(cloud.AWS, string(i.InstanceType)); err == nil {
		return t.VCPUs, nil
	}
	return 0, fmt.Errorf("the vCPUs of instance %s (%s) are unknown: ec2 DescribeInstances gave no CPU options", aws.ToString(i.InstanceId), i.InstanceType)
}

func ec2Tag(tags []ec2types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}
