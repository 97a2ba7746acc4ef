package addonmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"kubeup.dev/kubeup/components"
)

// Node role labels. The NodeRestriction admission plugin forbids kubelets
// to set node-role.kubernetes.io/* on themselves, so kubelets register with
// components.RoleLabel and the manager translates.
const (
	ControlPlaneRoleLabel = "node-role.kubernetes.io/control-plane"
	WorkerRoleLabel       = "node-role.kubernetes.io/worker"
)

// MissingRoleLabels returns the role labels node should carry and does not
// (any value counts as present), or nil.
func MissingRoleLabels(node *corev1.Node) map[string]string {
	var want string
	switch components.Role(node.Labels[components.RoleLabel]) {
	case components.Master:
		want = ControlPlaneRoleLabel
	case components.Node:
		want = WorkerRoleLabel
	default:
		return nil
	}
	if _, ok := node.Labels[want]; ok {
		return nil
	}
	return map[string]string{want: ""}
}

// MissingPodCIDR returns the pod range node should have and has not (a
// fixed one from podCIDRs, by Node name), or "".
func MissingPodCIDR(node *corev1.Node, podCIDRs map[string]string) string {
	want := podCIDRs[node.Name]
	if want == "" || node.Spec.PodCIDR != "" || len(node.Spec.PodCIDRs) > 0 {
		return ""
	}
	return want
}

// NodeLabeler adds node-role labels to Nodes from their kubeup role, and
// on the clouds sets each Node's fixed pod range (spec.podCIDR, which
// can be set once) in place of the controller-manager's allocator.
type NodeLabeler struct {
	client   kubernetes.Interface
	nodes    corelisters.NodeLister
	queue    workqueue.TypedRateLimitingInterface[string]
	log      *slog.Logger
	metrics  *Metrics
	podCIDRs map[string]string
}

// NewNodeLabeler registers its handler on factory's Node informer; start
// the factory, then Run. podCIDRs are the machines' fixed pod ranges by
// name (nil: the controller-manager allocates them).
func NewNodeLabeler(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger, m *Metrics, podCIDRs map[string]string) (*NodeLabeler, error) {
	inf := factory.Core().V1().Nodes()
	l := &NodeLabeler{
		client: client, nodes: inf.Lister(), log: log, metrics: m, podCIDRs: podCIDRs,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodes"}),
	}
	enqueue := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok && (MissingRoleLabels(n) != nil || MissingPodCIDR(n, l.podCIDRs) != "") {
			l.queue.Add(n.Name)
		}
	}
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return nil, fmt.Errorf("watch nodes: %w", err)
	}
	return l, nil
}

// Run works the queue until ctx ends.
func (l *NodeLabeler) Run(ctx context.Context) {
	go func() {
		<-ctx.Done()
		l.queue.ShutDown()
	}()
	for l.processNext(ctx) {
	}
}

func (l *NodeLabeler) processNext(ctx context.Context) bool {
	name, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(name)
	ctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if err := l.label(ctx, name); err != nil {
		l.log.Warn("node labelling failed; will retry", "node", name, "err", err)
		l.queue.AddRateLimited(name)
		return true
	}
	l.queue.Forget(name)
	return true
}

func (l *NodeLabeler) label(ctx context.Context, name string) error {
	node, err := l.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	missing := MissingRoleLabels(node)
	podCIDR := MissingPodCIDR(node, l.podCIDRs)
	if missing == nil && podCIDR == "" {
		return nil
	}
	// A merge patch of what is missing only: it cannot undo other
	// writers' labels.
	body := map[string]any{}
	if missing != nil {
		body["metadata"] = map[string]any{"labels": missing}
	}
	if podCIDR != "" {
		body["spec"] = map[string]any{"podCIDR": podCIDR, "podCIDRs": []string{podCIDR}}
	}
	patch, err := json.Marshal(body)
	if err != nil {
		return err
	}
	if _, err := l.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("label node %s: %w", name, err)
	}
	if podCIDR != "" {
		l.log.Info("set the node's pod range", "node", name, "podCIDR", podCIDR)
	}
	if missing != nil {
		l.metrics.nodeLabels.Add(float64(len(missing)))
		l.log.Info("labelled node", "node", name, "labels", slices.Sorted(maps.Keys(missing)))
	}
	return nil
}
