package cluster

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/provision/config"
)

// drainTimeout bounds the eviction of a replaced machine's pods; past it
// the ones left are deleted (the machine is about to go, and a machine that
// is already dead never confirms an eviction).
const drainTimeout = 3 * time.Minute

// CheckReplace says why machines cannot be replaced in c (nil: they can):
// each must be one of c's machines, and c must be a local cluster that
// exists.
func CheckReplace(c *config.Cluster, dataDir string, names []string) error {
	if len(names) == 0 {
		return errors.New("--machine: name at least one machine to replace")
	}
	if c.Spec.Target.Provider != config.ProviderLocal {
		return fmt.Errorf("spec.target.provider %q: replace recreates local VMs; on metal, reinstall the machine by network boot", c.Spec.Target.Provider)
	}
	var all []string
	for _, m := range c.Machines() {
		all = append(all, m.Name)
	}
	var errs []error
	for _, n := range names {
		if !slices.Contains(all, n) {
			errs = append(errs, fmt.Errorf("--machine %q: cluster %q has no such machine (it has %s)", n, c.Metadata.Name, strings.Join(all, ", ")))
		}
	}
	masters := 0
	for _, n := range names {
		if slices.ContainsFunc(c.Masters(), func(m config.Machine) bool { return m.Name == n }) {
			masters++
		}
	}
	if masters > 0 && masters >= (len(c.Masters())+1)/2 {
		errs = append(errs, fmt.Errorf("--machine: replacing %d of %d masters at once would lose etcd's quorum; replace them one at a time", masters, len(c.Masters())))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if _, err := LoadState(dataDir, c.Metadata.Name); err != nil {
		return err
	}
	return nil
}

// replaceSteps: a local cluster's bring-up that recreates the named
// machines from their images on the way: their pods are evicted, a
// master's etcd member is removed and added back as a new one, their Node
// objects deleted, and the engine replaces their VMs (new disks); then the
// same waits as up.
func replaceSteps() []step {
	return []step{
		{name: "images ready", run: ensureImages},
		{name: "cluster state", run: prepareLocalState},
		{name: "cluster PKI", run: loadPKI},
		{name: "API server healthy", run: waitAPIServer, wait: true},
		{name: "drained", run: drainReplaced, wait: true},
		{name: "etcd members re-added", run: readdEtcdMembers, wait: true},
		{name: "Nodes deleted", run: deleteReplacedNodes},
		{name: "rendered machine configs", run: renderMachines},
		{name: "VMs replaced", run: deployLocal},
		{name: "API server healthy", run: waitAPIServer, wait: true},
		{name: "all nodes Ready", run: waitNodes, wait: true},
		{name: "kube-system pods Ready", run: waitSystemPods, wait: true},
	}
}

func drainReplaced(ctx context.Context, u *bringUp) (string, error) {
	var evicted int
	for _, n := range u.opts.Replace {
		k, err := Drain(ctx, u.client, n, drainTimeout)
		if err != nil {
			return "", fmt.Errorf("drain %s: %w", n, err)
		}
		evicted += k
	}
	return fmt.Sprintf("%s, %d pods evicted", strings.Join(u.opts.Replace, ", "), evicted), nil
}

// Drain cordons a Node and evicts its pods (not DaemonSets' and static
// ones, which belong to the machine), as kubectl drain does; pods still
// there after timeout are deleted. A Node that does not exist is drained.
func Drain(ctx context.Context, client kubernetes.Interface, node string, timeout time.Duration) (int, error) {
	_, err := client.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cordon: %w", err)
	}
	pods, err := drainable(ctx, client, node)
	if err != nil {
		return 0, err
	}
	for _, p := range pods {
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: p.Name, Namespace: p.Namespace}}
		if err := client.PolicyV1().Evictions(p.Namespace).Evict(ctx, ev); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsTooManyRequests(err) {
			return 0, fmt.Errorf("evict %s/%s: %w", p.Namespace, p.Name, err)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		left, err := drainable(ctx, client, node)
		if err != nil {
			return 0, err
		}
		if len(left) == 0 {
			return len(pods), nil
		}
		if time.Now().After(deadline) {
			zero := int64(0)
			for _, p := range left {
				if err := client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil && !apierrors.IsNotFound(err) {
					return 0, fmt.Errorf("delete %s/%s after %s of eviction: %w", p.Namespace, p.Name, timeout, err)
				}
			}
			return len(pods), nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
}

// drainable are a Node's pods a drain moves.
func drainable(ctx context.Context, client kubernetes.Interface, node string) ([]corev1.Pod, error) {
	list, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{FieldSelector: "spec.nodeName=" + node})
	if err != nil {
		return nil, err
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if _, mirror := p.Annotations[corev1.MirrorPodAnnotationKey]; mirror {
			continue
		}
		if slices.ContainsFunc(p.OwnerReferences, func(o metav1.OwnerReference) bool { return o.Kind == "DaemonSet" }) {
			continue
		}
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		out = append(out, p)
	}
	return out, nil
}

// readdEtcdMembers: for each replaced master, another master's agent
// removes its etcd member and adds a new one with the same name and peer
// URL, which the new machine's etcd joins (initial-cluster-state
// existing). The state remembers it, so that later renders keep that
// machine's seed as it was booted.
func readdEtcdMembers(ctx context.Context, u *bringUp) (string, error) {
	var done []string
	for _, n := range u.opts.Replace {
		m, ok := u.state.Machine(n)
		if !ok || m.Role != config.RoleMaster {
			continue
		}
		peerURL := fmt.Sprintf("https://%s:%d", m.IP, components.EtcdPeerPort)
		var errs []error
		added := false
		for _, other := range u.state.Machines {
			if other.Role != config.RoleMaster || other.Name == n {
				continue
			}
			ac, err := AgentClient(ctx, u.state, other, u.bundle)
			if err != nil {
				return "", err
			}
			if _, err := ac.ReaddEtcdMember(ctx, n, peerURL); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", other.Name, err))
				continue
			}
			added = true
			break
		}
		if !added {
			return "", fmt.Errorf("re-add etcd member %s: no master's agent could: %w", n, errors.Join(errs...))
		}
		for i := range u.state.Machines {
			if u.state.Machines[i].Name == n {
				u.state.Machines[i].EtcdJoin = true
			}
		}
		done = append(done, n)
	}
	if len(done) == 0 {
		return "none", nil
	}
	return strings.Join(done, ", "), u.state.save(u.dir)
}

func deleteReplacedNodes(ctx context.Context, u *bringUp) (string, error) {
	for _, n := range u.opts.Replace {
		if err := u.client.CoreV1().Nodes().Delete(ctx, n, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return "", fmt.Errorf("delete Node %s: %w", n, err)
		}
	}
	return strings.Join(u.opts.Replace, ", "), nil
}
