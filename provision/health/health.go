package health

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Interval between polls.
const Interval = 2 * time.Second

// Clientset builds a client from kubeconfig bytes.
func Clientset(kubeconfig []byte) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.RESTConfigFromKubeConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Timeout = 15 * time.Second
	return kubernetes.NewForConfig(cfg)
}

// poll calls check until it returns nil; on timeout the error says what
// check last reported.
func poll(ctx context.Context, check func(context.Context) error) error {
	var last error
	for {
		if last = check(ctx); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %v", ctx.Err(), last)
		case <-time.After(Interval):
		}
	}
}

// WaitAPIServer waits until GET /readyz answers "ok".
func WaitAPIServer(ctx context.Context, cs kubernetes.Interface) error {
	return poll(ctx, func(ctx context.Context) error {
		body, err := cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		if err != nil {
			return fmt.Errorf("GET /readyz: %w", err)
		}
		if string(body) != "ok" {
			return fmt.Errorf("GET /readyz: %q", body)
		}
		return nil
	})
}

// WaitNodesReady waits until every named node exists and is Ready.
func WaitNodesReady(ctx context.Context, cs kubernetes.Interface, names []string) error {
	return poll(ctx, func(ctx context.Context) error {
		nodes, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		return NodesReady(nodes.Items, names)
	})
}

// NodesReady says which of names are missing or not Ready.
func NodesReady(nodes []corev1.Node, names []string) error {
	var problems []string
	for _, n := range names {
		i := slices.IndexFunc(nodes, func(x corev1.Node) bool { return x.Name == n })
		if i < 0 {
			problems = append(problems, n+" has not registered")
			continue
		}
		if c := condition(nodes[i].Status.Conditions, corev1.NodeReady); c == nil || c.Status != corev1.ConditionTrue {
			why := "no Ready condition yet"
			if c != nil {
				why = fmt.Sprintf("Ready=%s (%s: %s)", c.Status, c.Reason, c.Message)
			}
			problems = append(problems, n+" "+why)
		}
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func condition(cs []corev1.NodeCondition, t corev1.NodeConditionType) *corev1.NodeCondition {
	for i := range cs {
		if cs[i].Type == t {
			return &cs[i]
		}
	}
	return nil
}

// WaitSystemPodsReady waits until every kube-system pod is Ready (or
// Succeeded) and a pod whose name starts with each of expect exists.
func WaitSystemPodsReady(ctx context.Context, cs kubernetes.Interface, expect []string) error {
	return poll(ctx, func(ctx context.Context) error {
		pods, err := cs.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		return PodsReady(pods.Items, expect)
	})
}

// PodsReady says which pods are not Ready and which expected ones are absent.
func PodsReady(pods []corev1.Pod, expect []string) error {
	var problems []string
	for _, prefix := range expect {
		if !slices.ContainsFunc(pods, func(p corev1.Pod) bool { return strings.HasPrefix(p.Name, prefix) }) {
			problems = append(problems, "no "+prefix+" pod yet")
		}
	}
	for _, p := range pods {
		if p.Status.Phase == corev1.PodSucceeded {
			continue
		}
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		if !ready {
			problems = append(problems, fmt.Sprintf("%s is %s%s", p.Name, p.Status.Phase, waitingReason(p)))
		}
	}
	sort.Strings(problems)
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}

func waitingReason(p corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			return " (" + c.Name + ": " + w.Reason + ")"
		}
	}
	return ""
}
