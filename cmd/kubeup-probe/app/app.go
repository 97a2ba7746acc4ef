package app

import "kubeup.dev/kubeup/cmd/internal/cli"

// Binary is kubeup-probe.
var Binary = cli.Binary{
	Name:  "kubeup-probe",
	Short: "Wait until what a unit depends on is ready",
	Long: `kubeup-probe runs as units' ExecStartPost (an endpoint answers) and
ExecStartPre (a machine's Node exists), on every kubeup machine.`,
	Commands: []cli.Command{newWaitCommand, newCPUWeightCommand, newGateCommand},
}
