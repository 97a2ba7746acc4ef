package app

import "kubeup.dev/kubeup/cmd/internal/cli"

// Binary is kubeup-addons.
var Binary = cli.Binary{
	Name:  "kubeup-addons",
	Short: "kubeup's addon manager and cluster UI",
	Long: `kubeup-addons keeps the cluster's addons as declared (addon-manager, a unit on
masters) and serves the read-only cluster UI (ui, the kubeup-ui addon).`,
	Commands: []cli.Command{newAddonManagerCommand, newUICommand},
}
