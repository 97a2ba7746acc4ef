// Command kubeup-agent is kubeup's agent on every machine (`agent`).
package main

import (
	"os"

	"kubeup.dev/kubeup/cmd/kubeup-agent/app"
)

func main() {
	os.Exit(app.Binary.Main(os.Args[1:], os.Stdout, os.Stderr))
}
