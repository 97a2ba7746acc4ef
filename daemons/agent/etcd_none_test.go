//go:build noetcd

package agent

import (
	"errors"
	"testing"

	"kubeup.dev/kubeup/components/agentconfig"
)

// The node build refuses a master's configuration instead of reporting an
// etcd it cannot reach.
func TestNodeBuildRefusesEtcd(t *testing.T) {
	pki := newTestPKI(t)
	cfg := validConfig()
	cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile = pki.certFile, pki.keyFile, pki.caFile
	cfg.Role = agentconfig.RoleMaster
	cfg.Etcd = &agentconfig.Etcd{Endpoints: []string{"https://127.0.0.1:2379"}, CAFile: "/etc/kubernetes/pki/etcd/ca.crt", CertFile: "/etc/kubernetes/pki/etcd/c.crt", KeyFile: "/etc/kubernetes/pki/etcd/c.key"}
	_, err := New(&cfg, Options{Units: &fakeUnits{}, Routes: newFakeRoutes(), Masquerade: &fakeMasq{}})
	if !errors.Is(err, errNoEtcdClient) {
		t.Fatalf("New with etcd in the node build: %v, want %v", err, errNoEtcdClient)
	}
}
