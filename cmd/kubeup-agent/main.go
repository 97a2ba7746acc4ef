// Command kubeup-agent is kubeup's on-machine binary: the node agent
// (`agent`), the readiness probe units run as ExecStartPost (`probe`), and
// the addon manager on masters.
package main

import (
	"os"

	"kubeup.dev/kubeup/cmd/kubeup-agent/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
