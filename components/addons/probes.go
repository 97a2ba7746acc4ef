package addons

import corev1 "k8s.io/api/core/v1"

// A startup probe allows 10 s × 120 = 20 minutes for an addon to start
// before its liveness probe applies.
const (
	startupPeriodSeconds    = 10
	startupFailureThreshold = 120
)

// addStartupProbes gives every addon container with a liveness probe a
// startup probe on the same check, and drops the liveness probe's initial
// delay. Kubernetes runs liveness only once the startup probe has passed,
// so a slow start is waited for while a process that hangs later is still
// restarted at the liveness probe's pace. Under TCG on a loaded master,
// starts took longer than any fixed initial delay allowed (the UI did not
// listen within 70 s; Prometheus replays its WAL), and each liveness kill
// began the slow start again.
func addStartupProbes(objs []any) {
	eachContainer(objs, func(c *corev1.Container) {
		if c.LivenessProbe == nil || c.StartupProbe != nil {
			return
		}
		c.LivenessProbe.InitialDelaySeconds = 0
		c.StartupProbe = &corev1.Probe{
			ProbeHandler:     c.LivenessProbe.ProbeHandler,
			PeriodSeconds:    startupPeriodSeconds,
			TimeoutSeconds:   c.LivenessProbe.TimeoutSeconds,
			FailureThreshold: startupFailureThreshold,
		}
	})
}

// eachContainer calls f with every container of the workloads in objs.
func eachContainer(objs []any, f func(*corev1.Container)) {
	for _, o := range objs {
		if _, spec := workload(o); spec != nil {
			for i := range spec.Containers {
				f(&spec.Containers[i])
			}
		}
	}
}
