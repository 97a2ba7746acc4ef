// Command pulumi-resource-kubeup is kubeup's Pulumi resource provider plugin
// for machines on this host (QEMU VMs on a vde switch). The Pulumi engine
// starts it; kubeup puts it on the engine's PATH.
package main

import (
	"fmt"
	"os"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi/provider"

	kubeupprovider "kubeup.dev/kubeup/infra/provider"
)

func main() {
	// The host's API endpoint of a cluster with several masters is this
	// binary too (see kubeupprovider.EndpointType).
	if len(os.Args) > 1 && os.Args[1] == kubeupprovider.EndpointCommand {
		os.Exit(kubeupprovider.RunEndpoint(os.Args[2:]))
	}
	if err := provider.Main(kubeupprovider.Name, kubeupprovider.New); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
