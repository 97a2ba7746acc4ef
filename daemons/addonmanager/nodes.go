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

// NodeLabeler adds node-role labels to Nodes from their kubeup role.
type NodeLabeler struct {
	client  kubernetes.Interface
	nodes   corelisters.NodeLister
	queue   workqueue.TypedRateLimitingInterface[string]
	log     *slog.Logger
	metrics *Metrics
}

// NewNodeLabeler registers its handler on factory's Node informer; start
// the factory, then Run.
func NewNodeLabeler(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger, m *Metrics) (*NodeLabeler, error) {
	inf := factory.Core().V1().Nodes()
	l := &NodeLabeler{
		client: client, nodes: inf.Lister(), log: log, metrics: m,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](time.Second, 5*time.Minute),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodes"}),
	}
	enqueue := func(obj any) {
		if n, ok := obj.(*corev1.Node); ok && MissingRoleLabels(n) != nil {
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
	if missing == nil {
		return nil
	}
	// A merge patch of the missing labels only: it cannot undo other
	// writers' labels.
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": missing}})
	if err != nil {
		return err
	}
	if _, err := l.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("label node %s: %w", name, err)
	}
	l.metrics.nodeLabels.Add(float64(len(missing)))
	l.log.Info("labelled node", "node", name, "labels", slices.Sorted(maps.Keys(missing)))
	return nil
}
