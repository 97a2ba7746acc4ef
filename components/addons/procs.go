package addons

import corev1 "k8s.io/api/core/v1"

// oneProcessor sets GOMAXPROCS=1 in every addon container that does not
// set it (every addon is a Go program: CoreDNS, Prometheus, VictoriaLogs,
// the aggregator, the UI). The addons of a small cluster share the
// masters with the control plane, and do little parallel work; with a P
// per CPU each Go runtime hands goroutines between idle threads at every
// wake-up, which under emulation (TCG) costs real CPU. Measured on kubeup's
// own agent: 73 context switches a second fell to 8 and its CPU by a
// quarter. (Go would lower GOMAXPROCS by itself under a CPU limit, but a
// limit would also throttle an addon's bursts.)
func oneProcessor(objs []any) {
	eachContainer(objs, func(c *corev1.Container) {
		for _, e := range c.Env {
			if e.Name == "GOMAXPROCS" {
				return
			}
		}
		c.Env = append(c.Env, corev1.EnvVar{Name: "GOMAXPROCS", Value: "1"})
	})
}
