// Package leftovers proves that `kubeup down` left nothing behind: after a
// cluster's Pulumi stack is destroyed it lists, through the cloud's own API,
// what still carries the cluster's tag or label (or, on GCP, its name
// prefix), and fails naming each leftover.
//
// Published images are not leftovers: they carry cloud.ImageTag
// (cloud.ImageLabel) and not the cluster's tag, so they are never listed.
package leftovers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Resource is one thing a cluster left behind.
type Resource struct {
	// Kind is the service and the resource type: "ec2:instance",
	// "elasticloadbalancing:loadbalancer", "compute:firewall".
	Kind string
	// ID identifies it to the cloud's CLI: an EC2 id (i-…, sg-…), else the
	// ARN (AWS); the path under the project, "zones/z/instances/name" (GCP).
	ID string
	// Name is its name (AWS: the Name tag or the name in the ARN), if any.
	Name string
}

// String is "kind id (name)", the name left out when empty or already the
// end of the id.
func (r Resource) String() string {
	s := r.Kind + " " + r.ID
	if r.Name != "" && r.Name != r.ID && !strings.HasSuffix(r.ID, "/"+r.Name) {
		s += " (" + r.Name + ")"
	}
	return s
}

// Lister lists what a cluster left in one cloud.
type Lister interface {
	Leftovers(ctx context.Context, cluster string) ([]Resource, error)
}

// InstanceLister reads the states of a cluster's instances.
type InstanceLister interface {
	// Instances maps each live or stopped instance's machine name (as in
	// the cluster config, e.g. "master-0") to its state as the cloud says
	// it ("running", "stopped", "RUNNING", "TERMINATED", ...).
	Instances(ctx context.Context, cluster string) (map[string]string, error)
}

var (
	_ InstanceLister = (*AWSLister)(nil)
	_ InstanceLister = (*GCPLister)(nil)
)

// hinter is a Lister that says how to delete its cloud's leftovers.
type hinter interface {
	deleteHint(cluster string, rs []Resource) string
}

// Error is Check's error when resources are left.
type Error struct {
	Cluster   string
	Resources []Resource
	// Hint says how to delete them by hand.
	Hint string
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cluster %q left %d resource(s) behind after down:\n", e.Cluster, len(e.Resources))
	for _, r := range e.Resources {
		fmt.Fprintf(&b, "  %s\n", r)
	}
	b.WriteString(e.Hint)
	return strings.TrimRight(b.String(), "\n")
}

const genericHint = "delete them by hand in the cloud's console (AWS: Resource Groups & Tag Editor; " +
	"Google Cloud: Compute Engine) or with its CLI (aws, gcloud), then check again"

// Check lists what cluster left through l: nil when nothing is left, else
// an *Error naming every leftover and how to delete them by hand.
func Check(ctx context.Context, l Lister, cluster string) error {
	if err := validCluster(cluster); err != nil {
		return err
	}
	rs, err := l.Leftovers(ctx, cluster)
	if err != nil {
		return fmt.Errorf("listing what cluster %q left: %w", cluster, err)
	}
	if len(rs) == 0 {
		return nil
	}
	rs = slices.Clone(rs)
	slices.SortFunc(rs, func(a, b Resource) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.ID, b.ID))
	})
	hint := genericHint
	if h, ok := l.(hinter); ok {
		hint = h.deleteHint(cluster, rs)
	}
	return &Error{Cluster: cluster, Resources: rs, Hint: hint}
}

func validCluster(cluster string) error {
	if cluster == "" {
		return errors.New("leftovers: empty cluster name")
	}
	return nil
}
