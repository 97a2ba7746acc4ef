// Command kubeup-agent is kubeup's agent on every machine (`agent`).
package main

import (
	"os"
	"runtime"

	"kubeup.dev/kubeup/cmd/kubeup-agent/app"
)

func main() {
	// No heap profiling: the agent serves no profiles, and the sampler's
	// stack buckets (kept for the life of the process) and its walks
	// through the binary's function tables only cost resident memory.
	// The master build links runtime/pprof (through gRPC), which keeps
	// the linker from turning it off as it does for the node build.
	runtime.MemProfileRate = 0
	os.Exit(app.Binary.Main(os.Args[1:], os.Stdout, os.Stderr))
}
