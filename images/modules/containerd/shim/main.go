// Command shim is containerd-shim-runc-v2, the per-sandbox runc shim, built
// from the same pinned containerd module as the daemon.
package main

import (
	"context"
	"runtime"

	"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/manager"
	_ "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2/task/plugin"
	"github.com/containerd/containerd/v2/pkg/shim"
)

func main() {
	// One P, like kubeup's other small daemons (components.oneProcessor):
	// containerd's runc manager starts each pod's long-lived shim with
	// GOMAXPROCS=4 appended to its environment (manager_linux.go), so the
	// unit's GOMAXPROCS=1 never reaches it, and a shim at rest then spent
	// 11-12 % of a vCPU and ~240 context switches a second on a node
	// under TCG (five shims: half a vCPU). A shim serves one pod.
	runtime.GOMAXPROCS(1)
	shim.RunShim(context.Background(), manager.NewShimManager("io.containerd.runc.v2"))
}
