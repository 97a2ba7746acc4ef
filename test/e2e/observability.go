package e2e

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/provision/cluster"
)

// ScrapeJobs are the Prometheus jobs every healthy cluster has, and which
// machines each covers (masters or all).
var ScrapeJobs = map[string]string{
	"etcd": "masters", "kube-apiserver": "masters", "kube-controller-manager": "masters",
	"kube-scheduler": "masters", "kubeup-addon-manager": "masters",
	"kubelet": "all", "cadvisor": "all", "kube-proxy": "all", "containerd": "all", "kubeup-agent": "all",
	"coredns": "any",
}

// TargetsUp says which expected targets are not up == 1 (empty: all are).
func TargetsUp(ctx context.Context, a *cluster.Access, st *cluster.State) ([]string, error) {
	samples, err := a.Query(ctx, "up")
	if err != nil {
		return nil, err
	}
	up := map[string]bool{} // job/machine
	any := map[string]bool{}
	for _, s := range samples {
		if s.Value == "1" {
			up[s.Labels["job"]+"/"+s.Labels["machine"]] = true
			any[s.Labels["job"]] = true
		}
	}
	var missing []string
	for job, where := range ScrapeJobs {
		if where == "any" {
			if !any[job] {
				missing = append(missing, job)
			}
			continue
		}
		for _, m := range st.Machines {
			if where == "masters" && m.Role != "master" {
				continue
			}
			if !up[job+"/"+m.Name] {
				missing = append(missing, job+"/"+m.Name)
			}
		}
	}
	sort.Strings(missing)
	return missing, nil
}

// UnitsWithoutLogs lists machine/unit pairs with no entry in the log store
// (scheduled components aside: their first run may be after the check).
func UnitsWithoutLogs(ctx context.Context, a *cluster.Access, st *cluster.State) ([]string, error) {
	var missing []string
	for _, m := range st.Machines {
		role := components.Role(m.Role)
		for _, c := range components.ForRole(role) {
			if _, ok := c.(components.Scheduled); ok {
				continue // runs on a timer, maybe not yet
			}
			entries, err := a.Logs(ctx, cluster.LogQuery{Machine: m.Name, Unit: c.Name() + ".service", Since: 24 * time.Hour, Limit: 1})
			if err != nil {
				return nil, err
			}
			if len(entries) == 0 {
				missing = append(missing, m.Name+"/"+c.Name())
			}
		}
	}
	return missing, nil
}

// PodPrints runs a pod that prints marker and returns once it has run.
func PodPrints(ctx context.Context, a *cluster.Access, image, marker string) error {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "log-marker", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "print", Image: image,
				Command: []string{"/bin/busybox", "sh", "-c", "echo " + marker + "; sleep 5"}}},
		},
	}
	return Create(ctx, func(ctx context.Context) error {
		_, err := a.Clientset.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
		return err
	})
}

// CountMessages counts log entries whose message starts with prefix,
// and how many distinct messages there are.
func CountMessages(ctx context.Context, a *cluster.Access, prefix string) (total, distinct int, err error) {
	entries, err := a.Logs(ctx, cluster.LogQuery{Text: fmt.Sprintf("%q", prefix), Since: 24 * time.Hour, Limit: 50000})
	if err != nil {
		return 0, 0, err
	}
	seen := map[string]bool{}
	for _, e := range entries {
		if strings.HasPrefix(e["_msg"], prefix) {
			total++
			seen[e["_msg"]] = true
		}
	}
	return total, len(seen), nil
}
