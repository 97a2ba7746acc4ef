//go:build noetcd

package agent

import "kubeup.dev/kubeup/components/agentconfig"

// newEtcdReaddFunc: the node build has no etcd client (and nodes no
// member); a configuration with etcd is refused before this (newEtcdHealth).
func newEtcdReaddFunc(agentconfig.Etcd) ReaddFunc { return nil }
