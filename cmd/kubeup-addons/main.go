// Command kubeup-addons is kubeup's addon manager (on masters) and the
// read-only cluster UI (run from its own container image).
package main

import (
	"os"

	"kubeup.dev/kubeup/cmd/kubeup-addons/app"
)

func main() {
	os.Exit(app.Binary.Main(os.Args[1:], os.Stdout, os.Stderr))
}
