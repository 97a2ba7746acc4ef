package app

import (
	"io"

	"kubeup.dev/kubeup/cmd/internal/cli"
)

// Binary is kubeup's command line.
var Binary = cli.Binary{
	Name:  "kubeup",
	Short: "Build Kubernetes appliance images and run clusters from them",
	Long: `kubeup turns the Kubernetes component architecture into bootable appliances:
it bakes a master and a node disk image (every component a systemd unit),
personalises machines with cloud-init, and deploys them with Pulumi.`,
	// One constructor per file in this package.
	Commands: []cli.Command{
		newRenderCommand,
		newArtifactsCommand,
		newBuildCommand,
		newUpCommand,
		newReplaceCommand,
		newDownCommand,
		newStatusCommand,
		newKubeconfigCommand,
		newCertsCommand,
		newVerifyCommand,
		newUICommand,
		newMetricsCommand,
		newLogsCommand,
		newEtcdCommand,
		newImagesCommand,
		newMetalCommand,
	},
}

// Main runs kubeup with args and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int { return Binary.Main(args, stdout, stderr) }
