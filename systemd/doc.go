// Package systemd renders systemd units from typed descriptions (with
// go-systemd's unit package, never by hand) and holds the small helpers
// daemons use to talk to systemd (readiness, watchdog). It knows nothing about
// Kubernetes.
package systemd
