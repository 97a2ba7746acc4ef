// Command kubeup builds Kubernetes appliance images and deploys clusters from them.
package main

import (
	"os"

	"kubeup.dev/kubeup/cmd/kubeup/app"
)

func main() {
	os.Exit(app.Main(os.Args[1:], os.Stdout, os.Stderr))
}
