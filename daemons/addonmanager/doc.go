// Package addonmanager is the runtime of kubeup's addon manager, the
// equivalent of Kubernetes' cluster/addons/addon-manager on the masters: it
// applies the manifests under the configured directories (Reconcile and
// EnsureExists modes, pruning), approves kubelet serving certificates, and
// gives nodes their node-role label. It runs as
// `kubeup-addons addon-manager`, a Type=notify systemd service with a
// watchdog, and serves /healthz and /metrics over HTTPS.
package addonmanager
