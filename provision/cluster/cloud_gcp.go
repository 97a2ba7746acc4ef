package cluster

import (
	"context"
	"fmt"
	"strings"

	"github.com/pulumi/pulumi-gcp/sdk/v9/go/gcp/compute"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/cloudinit"
	"kubeup.dev/kubeup/images/disk"
	"kubeup.dev/kubeup/infra"
	"kubeup.dev/kubeup/infra/cloud"
	"kubeup.dev/kubeup/infra/cloud/leftovers"
	"kubeup.dev/kubeup/infra/cloud/quota"
	gcpinfra "kubeup.dev/kubeup/infra/gcp"
)

// gcpTarget deploys to one GCP project and zone.
type gcpTarget struct{ project, region, zone string }

func (gcpTarget) provider() string         { return cloud.GCP }
func (gcpTarget) plugin() infra.Plugin     { return infra.PluginGCP }
func (gcpTarget) imageFormat() string      { return disk.FormatGCE }
func (gcpTarget) policy() cloudinit.Policy { return cloudinit.PolicyGCP() }
func (t gcpTarget) location() CloudState {
	return CloudState{Region: t.region, Zone: t.zone, Project: t.project}
}
func (t gcpTarget) program(c cloud.Cluster) pulumi.RunFunc { return gcpinfra.Program(c) }

func (t gcpTarget) stackConfig() infra.StackConfig {
	return infra.StackConfig{"gcp:project": t.project, "gcp:region": t.region, "gcp:zone": t.zone}
}

// imageProgram adopts an image already published in the project for the
// same digest (images are named by it) instead of creating it again.
func (t gcpTarget) imageProgram(img cloud.Image, mayAdopt bool) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		spec := gcpinfra.ImageSpec{Image: img}
		if mayAdopt {
			name, project := img.ImageName(), t.project
			found, err := compute.LookupImage(ctx, &compute.LookupImageArgs{Name: &name, Project: &project})
			switch {
			case err == nil && found.Labels[cloud.ImageLabel] == img.ShortDigest():
				spec.Adopt = found.SelfLink
			case err != nil && !strings.Contains(err.Error(), "not found") && !strings.Contains(err.Error(), "404") && !strings.Contains(err.Error(), "no results"):
				return err
			}
		}
		return gcpinfra.ImageProgram(t.project, t.region, []gcpinfra.ImageSpec{spec})(ctx)
	}
}

func (t gcpTarget) credentials(ctx context.Context) error {
	_, err := leftovers.GCPClient(ctx)
	return err
}

func (t gcpTarget) lister(ctx context.Context) (leftovers.Lister, error) {
	client, err := leftovers.GCPClient(ctx)
	if err != nil {
		return nil, err
	}
	return leftovers.NewGCP(t.project, t.region, t.zone, client, ""), nil
}

// A passthrough load balancer delivers packets to its own address.
func (gcpTarget) masterLocalAddresses(endpoint string) []string { return []string{endpoint} }

func (t gcpTarget) quota(ctx context.Context) (quota.Checker, error) {
	client, err := leftovers.GCPClient(ctx)
	if err != nil {
		return nil, err
	}
	return quota.NewGCP(t.project, t.region, client, ""), nil
}

// consoleHint is the command that prints a machine's serial console.
func (t gcpTarget) consoleHint(cluster, machine string) string {
	return fmt.Sprintf("its serial console: gcloud compute instances get-serial-port-output kubeup-%s-%s --zone %s --project %s",
		cluster, machine, t.zone, t.project)
}
