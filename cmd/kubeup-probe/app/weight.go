package app

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/systemd"
)

// cpuWeightTimeout bounds the D-Bus calls: systemd answers within
// milliseconds when idle, seconds on a saturated machine.
const cpuWeightTimeout = time.Minute

func newCPUWeightCommand(e *cli.Env) *cobra.Command {
	var afterBoot bool
	cmd := &cobra.Command{
		Use:   "cpu-weight UNIT=WEIGHT...",
		Short: "Set units' and slices' CPU weights until the next boot (a unit's ExecStartPre/Post)",
		Long: `cpu-weight sets the CPUWeight of each UNIT (a service or a slice), in
order, as systemctl set-property --runtime does, over one connection to
systemd. The API server's unit does the same through gate close's and wait's
--cpu-weight flags (its own, etcd's and the control-plane slice's weights
raised while it starts and lowered once it is ready), so that no process
of its own is started for it.

With --after-boot it changes nothing while systemd still starts the machine
(SystemState initializing or starting): at boot every unit starts at once,
and the raised weights starved system.slice and the kernel's own work (a
first boot of 3 masters under TCG never finished).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			ws, err := parseWeights(args)
			if err != nil {
				return err
			}
			return setWeights(e, ws, afterBoot)
		},
	}
	cmd.Flags().BoolVar(&afterBoot, "after-boot", false, "do nothing while the machine is booting")
	return cmd
}

// parseWeights reads UNIT=WEIGHT arguments; a bad one is a usage error.
func parseWeights(args []string) ([]systemd.CPUWeight, error) {
	var ws []systemd.CPUWeight
	for _, a := range args {
		w, err := systemd.ParseCPUWeight(a)
		if err != nil {
			return nil, &cli.ExitError{Code: 2, Err: err}
		}
		ws = append(ws, w)
	}
	return ws, nil
}

// setWeights sets ws over one D-Bus connection (nothing when ws is empty).
func setWeights(e *cli.Env, ws []systemd.CPUWeight, afterBoot bool) error {
	if len(ws) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), cpuWeightTimeout)
	defer cancel()
	skipped, err := systemd.SetCPUWeights(ctx, ws, afterBoot)
	if err != nil {
		return err
	}
	if skipped {
		e.Log.Info("the machine is booting: CPU weights left as they are", "weights", ws)
		return nil
	}
	e.Log.Debug("CPU weights set", "weights", ws)
	return nil
}
