//go:build noetcd

package app

import "kubeup.dev/kubeup/cmd/internal/cli"

// etcdCommands: the node build (-tags noetcd) has no etcd client, and
// nodes have no etcd member to snapshot.
var etcdCommands []cli.Command
