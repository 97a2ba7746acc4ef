package app

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/render"
)

func newRenderCommand(e *cli.Env) *cobra.Command {
	var configPath, out, pkiDir, binDir string
	cmd := &cobra.Command{
		Use:   "render --config FILE --out DIR",
		Short: "Render every machine's cloud-init seed and every role's systemd units",
		Long: `render writes, for every machine of the cluster, its user-data, meta-data,
network-config and NoCloud seed.iso, and for every role the systemd units and
static files its image carries (layout in the README). The cluster's PKI is
kept in --pki (default DIR/pki) and reused on the next render.

A config with problems exits with status 2, lists every problem on stderr
and writes nothing.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := loadConfig(configPath)
			if err != nil {
				return err
			}
			if pkiDir == "" {
				pkiDir = filepath.Join(out, "pki")
			}
			res, err := renderCluster(c, pkiDir, binDir)
			if err != nil {
				return err
			}
			if err := res.WriteDir(out); err != nil {
				return err
			}
			for _, m := range res.Machines {
				fmt.Fprintf(e.Stdout, "%-10s %-6s %-15s %s\n", m.Name, m.Role, m.IP, filepath.Join(out, render.MachinesDir, m.Name, "seed.iso"))
			}
			fmt.Fprintf(e.Stdout, "units: %s\n", filepath.Join(out, render.RolesDir))
			return nil
		},
	}
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "cluster config file (see examples/cluster.yaml)")
	cmd.Flags().StringVarP(&out, "out", "o", "", "output directory")
	cmd.Flags().StringVar(&pkiDir, "pki", "", "directory holding the cluster's PKI (default: OUT/pki)")
	cmd.Flags().StringVar(&binDir, "bin-dir", "", "directory with the kubeup-addons binary whose image the UI addon runs (default: this kubeup's)")
	_ = cmd.MarkFlagRequired("config")
	_ = cmd.MarkFlagRequired("out")
	return cmd
}

// loadConfig loads a config file, or the built-in default when path is
// empty. An invalid file is an cli.ExitError with status 2.
func loadConfig(path string) (*config.Cluster, error) {
	if path == "" {
		return config.Default("kubeup"), nil
	}
	c, err := config.Load(path)
	if err != nil {
		return nil, &cli.ExitError{Code: 2, Err: err}
	}
	return c, nil
}

// renderCluster loads or creates the PKI in pkiDir and renders c.
func renderCluster(c *config.Cluster, pkiDir, binDir string) (*render.Result, error) {
	bundle, err := pki.LoadOrGenerate(pkiDir, render.PKICluster(c), render.PKIOptions(c))
	if err != nil {
		return nil, fmt.Errorf("cluster PKI in %s: %w", pkiDir, err)
	}
	if binDir == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, err
		}
		binDir = filepath.Dir(self)
	}
	imgs, err := cluster.Images(binDir)
	if err != nil {
		return nil, err
	}
	return render.Render(c, bundle, render.Options{Images: imgs})
}
