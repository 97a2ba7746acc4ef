package config

import "kubeup.dev/kubeup/infra/cloud"

// MachineType is a role's instance type (AWS) or machine type (GCP) on a
// cloud target: the role's own field, the shared one, or kubeup's default.
func (c *Cluster) MachineType(role Role) string {
	var shared, master, node, provider string
	switch t := c.Spec.Target; t.Provider {
	case ProviderAWS:
		if t.AWS != nil {
			shared, master, node = t.AWS.InstanceType, t.AWS.MasterInstanceType, t.AWS.NodeInstanceType
		}
		provider = cloud.AWS
	case ProviderGCP:
		if t.GCP != nil {
			shared, master, node = t.GCP.MachineType, t.GCP.MasterMachineType, t.GCP.NodeMachineType
		}
		provider = cloud.GCP
	default:
		return ""
	}
	own := node
	if role == RoleMaster {
		own = master
	}
	switch {
	case own != "":
		return own
	case shared != "":
		return shared
	}
	return cloud.DefaultType(provider, string(role))
}

// CloudTarget is the cloud target's shared settings (nil on local and
// metal).
func (c *Cluster) CloudTarget() *CloudTarget {
	switch t := c.Spec.Target; {
	case t.Provider == ProviderAWS && t.AWS != nil:
		return &t.AWS.CloudTarget
	case t.Provider == ProviderGCP && t.GCP != nil:
		return &t.GCP.CloudTarget
	}
	return nil
}

// AWSZone is the AWS target's availability zone (default: the region's a).
func (a *AWSTarget) AWSZone() string {
	if a.Zone != "" {
		return a.Zone
	}
	return a.Region + "a"
}
