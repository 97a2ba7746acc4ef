// Command kubeup-probe waits until what a unit depends on is ready (its
// `wait` command runs as ExecStartPost and ExecStartPre).
package main

import (
	"os"

	"kubeup.dev/kubeup/cmd/kubeup-probe/app"
)

func main() {
	os.Exit(app.Binary.Main(os.Args[1:], os.Stdout, os.Stderr))
}
