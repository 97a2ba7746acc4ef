package e2e_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/provision/cluster"
	e2e "kubeup.dev/kubeup/test/e2e"
)

// agentTunnelTest: the way the host reaches the agents on a cloud (only the
// API's load balancer open to it) works on real machines: with the
// agent-access DaemonSet a cloud cluster runs (here as the user's object:
// the local addon manager would prune it as its own), every machine's agent
// answers through a port forward via the API server, kubelet and
// containerd, and it is that machine's agent.
func agentTunnelTest(t *testing.T, ctx context.Context, a *cluster.Access, st *cluster.State, dataDir string, pause string) {
	t.Helper()
	start := time.Now()
	c := &components.Cluster{Images: components.Images{Pause: pause}}
	ds := addons.AgentAccess(c).Objects[0].(*appsv1.DaemonSet)
	delete(ds.Labels, components.AddonModeLabel)
	if err := e2e.Create(ctx, func(ctx context.Context) error {
		_, err := a.Clientset.AppsV1().DaemonSets(addons.Namespace).Create(ctx, ds, metav1.CreateOptions{})
		return err
	}); err != nil {
		t.Errorf("agent tunnel: create the DaemonSet: %v", err)
		return
	}
	b, err := cluster.LoadBundle(dataDir, st.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st.Machines {
		var last error
		for {
			tctx, cancel := context.WithTimeout(ctx, time.Minute)
			var s string
			if c, err := cluster.TunnelAgentClient(tctx, st, m, b); err != nil {
				last = err
			} else if status, err := c.Status(tctx); err != nil {
				last = err
			} else {
				s, last = status.Machine, nil
				if s != m.Name || len(status.Units) == 0 {
					t.Errorf("agent tunnel to %s: the agent says machine %q, %d units", m.Name, s, len(status.Units))
				}
			}
			cancel()
			if last == nil {
				t.Logf("agent tunnel: %s's agent answered through the API server %s after the DaemonSet", m.Name, time.Since(start).Round(time.Second))
				break
			}
			if time.Since(start) > 5*time.Minute {
				pods, _ := a.Clientset.CoreV1().Pods(addons.Namespace).List(ctx, metav1.ListOptions{LabelSelector: "k8s-app=" + addons.AgentAccessApp})
				var phases []corev1.PodPhase
				for _, p := range pods.Items {
					phases = append(phases, p.Status.Phase)
				}
				t.Errorf("agent tunnel to %s: %v (agent-access pods: %v)", m.Name, last, phases)
				break
			}
			time.Sleep(3 * time.Second)
		}
	}
}
