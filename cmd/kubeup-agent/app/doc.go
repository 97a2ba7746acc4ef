// Package app holds kubeup-agent's command: the node agent. The addon
// manager and the UI are kubeup-addons', and the readiness probe is
// kubeup-probe, so the agent on every machine links none of them.
package app
