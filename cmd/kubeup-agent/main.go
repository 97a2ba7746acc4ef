// Command kubeup-agent is kubeup's agent on every machine: the node agent
// (`agent`) and the readiness probe units run as ExecStartPost (`probe`).
package main

import (
	"os"

	"kubeup.dev/kubeup/cmd/kubeup-agent/app"
)

func main() {
	os.Exit(app.Binary.Main(os.Args[1:], os.Stdout, os.Stderr))
}
