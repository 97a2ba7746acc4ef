package app

import "kubeup.dev/kubeup/cmd/internal/cli"

// Binary is kubeup-agent.
var Binary = cli.Binary{
	Name:  "kubeup-agent",
	Short: "kubeup's agent on every machine",
	Long: `kubeup-agent runs on every kubeup machine: log forwarding, metrics, status,
journal and the pod network; on masters also etcd's scheduled snapshots.
Its apilb command is the machine's API server load balancer.`,
	Commands: append([]cli.Command{newAgentCommand, newAPILBCommand}, etcdCommands...),
}
