package app

import (
	"fmt"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
)

func newMetalCommand(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "metal",
		Short: "Bare-metal machines: boot disks (network boot is kubeup up on the metal target)",
	}
	cmd.AddCommand(newMetalDiskCommand(e))
	return cmd
}

func newMetalDiskCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var configPath, machine, out, device string
	var yes bool
	cmd := &cobra.Command{
		Use:   "disk --config FILE --machine NAME (--out FILE | --device /dev/sdX --yes)",
		Short: "Write one machine's boot disk: its role's image with its cloud-init seed on it",
		Long: `disk writes a raw disk for one machine of a metal cluster: its role's image with
the machine's NoCloud seed on the root filesystem (/var/lib/cloud/seed/nocloud),
so that it boots with nothing else attached and needs no boot server. Write it
to the machine's disk or a USB stick with dd, or let --device write a block
device directly: kubeup refuses a device that is mounted, swap, held by LVM
or RAID, or this host's own disk, and asks for --yes.

It uses the cluster's PKI and state (made on first use), so kubeup up with the
same config afterwards waits for the machines. A master's disk holds the
cluster's keys: keep the file as you would the keys.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (out == "") == (device == "") {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("give one of --out FILE or --device /dev/sdX")}
			}
			c, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if c.Spec.Target.Provider != config.ProviderMetal {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("%s: spec.target.provider is %q; boot disks are for the metal target (see examples/metal.yaml)", configPath, c.Spec.Target.Provider)}
			}
			if f.name != "" {
				c.Metadata.Name = f.name
			}
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			d := cluster.MetalDiskOptions{Machine: machine, Out: out, Confirmed: yes}
			if device != "" {
				d.Out, d.Device = device, true
			}
			what, err := cluster.MetalDisk(cmd.Context(), c, o, d)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.Stdout, what)
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "the metal cluster's config file (see examples/metal.yaml)")
	cmd.Flags().StringVar(&machine, "machine", "", "the machine's name (spec.target.metal.machines[].name)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the disk to this file")
	cmd.Flags().StringVar(&device, "device", "", "write the disk to this block device (needs --yes)")
	cmd.Flags().BoolVar(&yes, "yes", false, "with --device: overwrite the whole device")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("machine")
	return cmd
}
