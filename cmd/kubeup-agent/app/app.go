// Package app holds kubeup-agent's commands: the node agent and the
// readiness probe. The addon manager and the UI are kubeup-addons', so the
// agent on every machine links neither.
package app

import "kubeup.dev/kubeup/cmd/internal/cli"

// Binary is kubeup-agent.
var Binary = cli.Binary{
	Name:  "kubeup-agent",
	Short: "kubeup's agent on every machine",
	Long: `kubeup-agent runs on every kubeup machine: the node agent (log forwarding,
metrics, status, journal, pod network) and the readiness probe units run as
ExecStartPost.`,
	Commands: []cli.Command{newProbeCommand, newAgentCommand},
}
