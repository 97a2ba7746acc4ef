//go:build noetcd

package agent

import "kubeup.dev/kubeup/components/agentconfig"

// newEtcdChecker: the node image's agent is built with -tags noetcd. Nodes
// have no etcd member to report, and etcd's client (gRPC, protobuf, zap) is
// most of the code a master's agent links beyond a node's, which a node
// would map for nothing.
func newEtcdChecker(agentconfig.Etcd) (etcdChecker, etcdLister, error) {
	return nil, nil, errNoEtcdClient
}

// newEtcdSnapshotFunc: nor does it take snapshots.
func newEtcdSnapshotFunc(agentconfig.Etcd) (SnapshotFunc, error) { return nil, errNoEtcdClient }
