//go:build noetcd

package agent

import (
	"context"

	"kubeup.dev/kubeup/components/agentconfig"
)

// The node image's agent is built with -tags noetcd: nodes have no etcd
// member to report, and etcd's client (gRPC, protobuf, zap) is most of the
// code a master's agent links beyond a node's, which a node would map for
// nothing.
const etcdClientBuilt = false

func clientv3Checker(agentconfig.Etcd) etcdChecker {
	return func(context.Context, string) EtcdMemberStatus {
		return EtcdMemberStatus{Error: errNoEtcdClient.Error()}
	}
}
