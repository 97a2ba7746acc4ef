// Package cloud is what the AWS and GCP programs (infra/aws, infra/gcp)
// share: the cluster they deploy, described without any cloud's types; the
// ports and rules between the cluster's machines; the tags and labels that
// mark everything a cluster owns; and the catalogue of machine types with
// their list prices, which validates a config and estimates its cost.
package cloud

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"kubeup.dev/kubeup/components"
)

// Provider names (as in spec.target.provider).
const (
	AWS = "aws"
	GCP = "gcp"
)

// Roles of machines.
const (
	RoleMaster = "master"
	RoleNode   = "node"
)

// Cluster is one cluster as a cloud program deploys it. With Machines
// empty the program creates only what the machines' configuration depends
// on (network, firewall, the API load balancer and its address, the
// images): `kubeup up` runs it so first, renders the machines with the load
// balancer's address, then runs it again with the machines.
type Cluster struct {
	Name     string
	Provider string // AWS or GCP
	// Region is the AWS region or the GCP region (of Zone).
	Region string
	// Zone is the AWS availability zone ("" for the region's first) or the
	// GCP zone the machines and the subnet live in.
	Zone string
	// Project is the GCP project.
	Project string
	Network Network
	// APIAllowedCIDRs may reach the API server (6443) through the load
	// balancer. Never empty: a config without it is refused.
	APIAllowedCIDRs []string
	// SSHAllowedCIDRs may reach port 22 of every machine; empty (no SSH
	// ingress, and no public addresses on the machines) unless the config
	// has SSH keys and CIDRs.
	SSHAllowedCIDRs []string
	// Images by role (RoleMaster, RoleNode).
	Images map[string]Image
	// Machines are masters then nodes.
	Machines []Machine
	// Tags are the user's extra tags (AWS) or labels (GCP); the programs
	// add ClusterTag (ClusterLabel) themselves.
	Tags map[string]string
}

// Network is the cluster's network.
type Network struct {
	// MachineCIDR is the VPC's and the subnet's range: the machines have
	// fixed addresses in it (their certificates name them).
	MachineCIDR string
	// PodCIDR is the pods' range: pod traffic between machines is allowed.
	PodCIDR string
	// VPC and Subnet name an existing network to use instead of creating
	// one (AWS: vpc-… and subnet-… ids whose range holds MachineCIDR; GCP:
	// network and subnetwork names). Both or neither.
	VPC, Subnet string
}

// Image is one role's disk image as built on this host.
type Image struct {
	Role string
	// Path is the file uploaded: the raw disk (AWS) or the GCE tar.gz
	// holding disk.raw (GCP).
	Path string
	// SHA256 is the image manifest's digest (hex): it names the published
	// image, tags it, and finds one published before.
	SHA256 string
	// SizeBytes is the raw disk's size (the snapshot's and the smallest
	// root volume's).
	SizeBytes int64
	// UEFI: the image boots with UEFI (else legacy BIOS).
	UEFI bool
	// ID is the published image the machines boot (AWS: ami-…; GCP: the
	// image's self link), an output of the images stack (ImageProgram).
	ID string
}

// ImageName is the published image's name: kubeup-<role>-<short digest>,
// unique per digest, so a published image is found by name.
func (i Image) ImageName() string { return "kubeup-" + i.Role + "-" + i.ShortDigest() }

// ShortDigest is the digest as names and GCP label values carry it (the
// first 20 hex digits; labels hold at most 63 characters).
func (i Image) ShortDigest() string {
	if len(i.SHA256) < 20 {
		return i.SHA256
	}
	return i.SHA256[:20]
}

// Machine is one instance.
type Machine struct {
	Name string
	Role string
	// Type is the instance type (AWS) or machine type (GCP).
	Type string
	// IP is its fixed private address in Network.MachineCIDR.
	IP string
	// DiskGiB is its root volume.
	DiskGiB int
	// PodCIDR is its fixed pod range (components.PodCIDRFor), routed to
	// it by the network.
	PodCIDR string
	// UserData is its cloud-init user-data as the target takes it
	// (possibly gzip: the programs base64 it where the API needs text).
	UserData []byte
}

// Masters returns the masters of c.
func (c Cluster) Masters() []Machine {
	var out []Machine
	for _, m := range c.Machines {
		if m.Role == RoleMaster {
			out = append(out, m)
		}
	}
	return out
}

// Tags and labels on everything a cluster owns.
const (
	// ClusterTag is the AWS tag whose value is the cluster's name.
	ClusterTag = "kubeup.dev/cluster"
	// ImageTag is the AWS tag whose value is an image's manifest digest:
	// published images carry it instead of ClusterTag (they outlive
	// clusters).
	ImageTag = "kubeup.dev/image-sha256"
	// RoleTag is the AWS tag of a machine's or image's role.
	RoleTag = "kubeup.dev/role"
	// ClusterLabel, ImageLabel and RoleLabel are the GCP labels (keys hold
	// no dots or slashes; ImageLabel's value is Image.ShortDigest).
	ClusterLabel = "kubeup-cluster"
	ImageLabel   = "kubeup-image"
	RoleLabel    = "kubeup-role"
)

// ClusterTags are the tags of a cluster's resources: the user's, then
// extra, then ClusterTag (which the user cannot override).
func (c Cluster) ClusterTags(extra map[string]string) map[string]string {
	return c.marked(ClusterTag, extra)
}

// ClusterLabels are the GCP labels of a cluster's resources.
func (c Cluster) ClusterLabels(extra map[string]string) map[string]string {
	return c.marked(ClusterLabel, extra)
}

func (c Cluster) marked(key string, extra map[string]string) map[string]string {
	out := maps.Clone(c.Tags)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, extra)
	out[key] = c.Name
	return out
}

// Rule is one allowed flow into a group of machines.
type Rule struct {
	// To is the group receiving: RoleMaster or RoleNode.
	To string
	// Protocol is "tcp", "udp" or "all"; FromPort..ToPort the ports (0..0
	// with "all").
	Protocol         string
	FromPort, ToPort int
	// From is a group (RoleMaster, RoleNode) or CIDRs, exactly one set.
	FromGroup string
	FromCIDRs []string
	// Why is the rule's description.
	Why string
}

// Rules are the flows into the machines, least privilege: the API from
// the allowed CIDRs (through the load balancer, which keeps the client's
// address) and from the machines; etcd only between masters; kubelet, the
// agent and the metrics ports only from the cluster's machines; pod
// traffic from the pod range; SSH only from its CIDRs. Nothing else, and
// nothing from 0.0.0.0/0.
func (c Cluster) Rules() []Rule {
	tcp := func(to string, port int, from, why string) Rule {
		return Rule{To: to, Protocol: "tcp", FromPort: port, ToPort: port, FromGroup: from, Why: why}
	}
	var r []Rule
	r = append(r,
		Rule{To: RoleMaster, Protocol: "tcp", FromPort: components.APIServerPort, ToPort: components.APIServerPort, FromCIDRs: c.APIAllowedCIDRs, Why: "Kubernetes API from the allowed CIDRs"},
		tcp(RoleMaster, components.APIServerPort, RoleMaster, "Kubernetes API from masters"),
		tcp(RoleMaster, components.APIServerPort, RoleNode, "Kubernetes API from nodes"),
		Rule{To: RoleMaster, Protocol: "tcp", FromPort: components.EtcdClientPort, ToPort: components.EtcdPeerPort, FromGroup: RoleMaster, Why: "etcd between masters"},
	)
	for _, to := range []string{RoleMaster, RoleNode} {
		for _, from := range []string{RoleMaster, RoleNode} {
			for _, p := range MachinePorts() {
				r = append(r, tcp(to, p.Port, from, p.Name+" from "+from+"s"))
			}
		}
		r = append(r, Rule{To: to, Protocol: "all", FromCIDRs: []string{c.Network.PodCIDR}, Why: "pod traffic"})
		if len(c.SSHAllowedCIDRs) > 0 {
			r = append(r, Rule{To: to, Protocol: "tcp", FromPort: 22, ToPort: 22, FromCIDRs: c.SSHAllowedCIDRs, Why: "SSH from the allowed CIDRs"})
		}
	}
	return r
}

// NamedPort is a port every machine listens on for the others.
type NamedPort struct {
	Name string
	Port int
}

// MachinePorts are the ports machines reach on each other (besides the
// API server and etcd): kubelet, kubeup's agent and the components'
// metrics, which the monitoring addon scrapes.
func MachinePorts() []NamedPort {
	return []NamedPort{
		{"kubelet", components.KubeletPort},
		{"kubeup-agent", components.AgentPort},
		{"kubeup-addon-manager metrics", components.AddonManagerPort},
		{"kube-controller-manager metrics", components.ControllerManagerPort},
		{"kube-scheduler metrics", components.SchedulerPort},
	}
}

// Validate checks what every cloud program needs; the config's validation
// names the fields, this guards the programs' own callers (tests, tools).
func (c Cluster) Validate() error {
	var bad []string
	if c.Name == "" {
		bad = append(bad, "name is empty")
	}
	if len(c.APIAllowedCIDRs) == 0 {
		bad = append(bad, "no API allowed CIDRs")
	}
	for _, s := range append(slices.Clone(c.APIAllowedCIDRs), c.SSHAllowedCIDRs...) {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%q is not a CIDR", s))
		} else if p.Bits() == 0 {
			bad = append(bad, fmt.Sprintf("%q allows the whole internet", s))
		}
	}
	if _, err := netip.ParsePrefix(c.Network.MachineCIDR); err != nil {
		bad = append(bad, fmt.Sprintf("machine CIDR %q: %v", c.Network.MachineCIDR, err))
	}
	if (c.Network.VPC == "") != (c.Network.Subnet == "") {
		bad = append(bad, "an existing network needs both the VPC and the subnet")
	}
	for _, r := range []string{RoleMaster, RoleNode} {
		if i, ok := c.Images[r]; !ok || i.SHA256 == "" {
			bad = append(bad, "no "+r+" image")
		}
	}
	if len(c.Machines) > 0 && len(c.Masters()) == 0 {
		bad = append(bad, "no master")
	}
	if len(bad) > 0 {
		return fmt.Errorf("cloud cluster %q: %s", c.Name, strings.Join(bad, "; "))
	}
	return nil
}
