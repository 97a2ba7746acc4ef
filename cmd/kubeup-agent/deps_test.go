package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The agent runs on every machine with a 20 MB resident-memory budget, and
// most of its resident memory is the code and tables of what it links. This
// guards the two cuts that matter: the component catalogue (and with it the
// kubelet's, kube-proxy's, scheduler's and API server's configuration types)
// stays out of the agent, so do core/v1's generated types (the agent decodes
// Nodes into its own kubeNode), and the node build (-tags noetcd) links no etcd
// client; gRPC only for containerd's API (the registry mirror) and, as on
// masters, without x/net/trace and html/template (-tags grpcnotrace).
func TestAgentDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	deps := func(tags string) []string {
		out, err := exec.Command("go", "list", "-deps", "-tags", tags, ".").Output()
		if err != nil {
			t.Fatalf("go list -deps -tags %q: %v", tags, err)
		}
		return strings.Fields(string(out))
	}
	check := func(build string, pkgs []string, banned ...string) {
		for _, p := range pkgs {
			for _, b := range banned {
				if p == b || strings.HasPrefix(p, b+"/") {
					t.Errorf("%s links %s (banned prefix %s): see `go list -deps` for who imports it", build, p, b)
				}
			}
		}
	}
	all := deps("grpcnotrace")
	check("the master build", all, "kubeup.dev/kubeup/daemons/addonmanager", "k8s.io/component-base", "k8s.io/api/core",
		"k8s.io/kubelet", "k8s.io/kube-proxy", "k8s.io/client-go/kubernetes", "golang.org/x/net/trace", "html/template",
		// Restores run etcdutl from the etcd image files; the agent links
		// only the client.
		"go.etcd.io/etcd/server", "go.etcd.io/etcd/etcdutl", "go.etcd.io/bbolt")
	if slices.Contains(all, "kubeup.dev/kubeup/components") {
		t.Errorf("the master build links the component catalogue (kubeup.dev/kubeup/components)")
	}
	if !slices.Contains(all, "go.etcd.io/etcd/client/v3") {
		t.Errorf("the master build lost the etcd client")
	}
	node := deps("noetcd,grpcnotrace")
	check("the node build", node, "go.etcd.io", "go.uber.org/zap", "golang.org/x/net/trace", "html/template",
		"github.com/containerd/containerd/v2/client")
	if !slices.Contains(node, "kubeup.dev/kubeup/daemons/agent/mirror") {
		t.Errorf("the node build lost the registry mirror")
	}
}
