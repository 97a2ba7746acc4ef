package cluster

import (
	"context"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-aws/sdk/v6/go/aws/ec2"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/cloudinit"
	"kubeup.dev/kubeup/images/disk"
	"kubeup.dev/kubeup/infra"
	awsinfra "kubeup.dev/kubeup/infra/aws"
	"kubeup.dev/kubeup/infra/cloud"
	"kubeup.dev/kubeup/infra/cloud/leftovers"
	"kubeup.dev/kubeup/infra/cloud/quota"
)

// awsTarget deploys to one AWS region and availability zone.
type awsTarget struct{ region, zone string }

func (awsTarget) provider() string                         { return cloud.AWS }
func (awsTarget) plugin() infra.Plugin                     { return infra.PluginAWS }
func (t awsTarget) location() CloudState                   { return CloudState{Region: t.region, Zone: t.zone} }
func (awsTarget) imageFormat() string                      { return disk.FormatRaw }
func (awsTarget) policy() cloudinit.Policy                 { return cloudinit.PolicyAWS() }
func (t awsTarget) program(c cloud.Cluster) pulumi.RunFunc { return awsinfra.Program(c) }

// The default provider's region (the programs use an explicit provider;
// the look-up below uses the default one).
func (t awsTarget) stackConfig() infra.StackConfig {
	return infra.StackConfig{"aws:region": t.region}
}

// imageProgram adopts an AMI this account already published for the same
// digest (another data directory, another user) instead of importing the
// image again.
func (t awsTarget) imageProgram(img cloud.Image, mayAdopt bool) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		spec := awsinfra.ImageSpec{Image: img}
		if mayAdopt {
			found, err := ec2.LookupAmi(ctx, awsinfra.LookupArgs(img))
			switch {
			case err == nil:
				spec.Adopt = found.Id
			case !strings.Contains(err.Error(), "no results") && !strings.Contains(err.Error(), "no matching"):
				return err
			}
		}
		return awsinfra.ImageProgram(t.region, []awsinfra.ImageSpec{spec})(ctx)
	}
}

func (t awsTarget) credentials(ctx context.Context) error {
	cfg, err := leftovers.LoadAWSConfig(ctx, t.region)
	if err != nil {
		return err
	}
	return leftovers.CheckAWSCredentials(ctx, cfg)
}

func (t awsTarget) lister(ctx context.Context) (leftovers.Lister, error) {
	cfg, err := leftovers.LoadAWSConfig(ctx, t.region)
	if err != nil {
		return nil, err
	}
	return leftovers.NewAWS(cfg), nil
}

// An NLB with instance targets rewrites nothing the masters must accept.
func (awsTarget) masterLocalAddresses(string) []string { return nil }

func (t awsTarget) quota(ctx context.Context) (quota.Checker, error) {
	cfg, err := leftovers.LoadAWSConfig(ctx, t.region)
	if err != nil {
		return nil, err
	}
	return quota.NewAWS(cfg), nil
}

// consoleHint is the command that prints a machine's serial console.
func (t awsTarget) consoleHint(cluster, machine string) string {
	return fmt.Sprintf("its serial console: aws ec2 get-console-output --region %s --latest --output text --instance-id "+
		"$(aws ec2 describe-instances --region %s --filters Name=tag:Name,Values=%s-%s --query 'Reservations[].Instances[].InstanceId' --output text)",
		t.region, t.region, cluster, machine)
}
