// Package app holds kubeup-agent's commands: the node agent, and on masters
// (the build without -tags noetcd) the scheduled etcd snapshot. The addon
// manager and the UI are kubeup-addons', and the readiness probe is
// kubeup-probe, so the agent on every machine links none of them.
package app
