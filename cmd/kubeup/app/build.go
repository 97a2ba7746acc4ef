package app

import (
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/images/build"
)

func newBuildCommand(e *cli.Env) *cobra.Command {
	var role, formats, out, cacheDir, src, binDir, source string
	cmd := &cobra.Command{
		Use:   "build [--role master|node|all] [--format raw,qcow2,gce] [--out DIR]",
		Short: "Build the master and node appliance disk images",
		Long: `build bakes bootable disk images from Debian bookworm packages, the pinned
artifacts (kubeup artifacts) and the role's systemd units (kubeup render):
kubeup-<role>-<kubernetes version>.{raw,qcow2,tar.gz} plus a .json manifest
(sha256 and size of each file, Debian packages, artifacts, preloaded container
images) and a .timings.json. The images boot by UEFI or BIOS; cloud-init
personalises each machine at first boot.

Every layer is cached by its inputs: a rebuild with nothing changed only
reads manifests. Needs root. Set SOURCE_DATE_EPOCH for reproducible output.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			roles, err := build.ParseRoles(role)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			fmts, err := build.ParseFormats(formats)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			srcKind, err := artifacts.ParseSource(source)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			o, err := buildOptions(cacheDir, out, binDir)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			o.Roles, o.Formats = roles, fmts
			o.Artifacts.Source, o.Artifacts.SrcDir = srcKind, src
			o.Progress = e.Stderr
			start := time.Now()
			ms, ts, err := build.Build(cmd.Context(), o)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ROLE\tFILE\tSIZE\tSHA256\tBUILD")
			for i, m := range ms {
				how := fmt.Sprintf("%.0fs", ts[i].BuildSeconds)
				if ts[i].Cached {
					how = "cached"
				}
				for _, f := range m.Files {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", m.Role, filepath.Join(o.OutDir, f.Name), mib(f.Size), f.SHA256[:16], how)
				}
			}
			tw.Flush()
			fmt.Fprintf(e.Stdout, "built in %s; manifests: %s\n", time.Since(start).Round(time.Second), filepath.Join(o.OutDir, "kubeup-*.json"))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&role, "role", "all", "role to build: master, node or all")
	f.StringVar(&formats, "format", "raw,qcow2,gce", "comma-separated formats: raw, qcow2, gce (a tar.gz with disk.raw)")
	f.StringVar(&out, "out", "", "output directory (default <cache dir>/vm-images)")
	f.StringVar(&cacheDir, "cache-dir", "", "cache directory (default $KUBEUP_CACHE_DIR or <user cache dir>/kubeup)")
	f.StringVar(&binDir, "bin-dir", "", "directory with the kubeup-agent, kubeup-agent-node, kubeup-probe and kubeup-addons binaries the images carry (default: this kubeup's)")
	f.StringVar(&source, "source", "build", "artifact source: build (from pinned Go modules) or release (pinned downloads)")
	f.StringVar(&src, "src", "", "kubeup checkout holding images/modules (default: found from the working directory)")
	return cmd
}

// buildOptions fills the directories every image-using command shares.
func buildOptions(cacheDir, out, binDir string) (build.Options, error) {
	var o build.Options
	if cacheDir == "" {
		d, err := artifacts.DefaultCacheDir()
		if err != nil {
			return o, err
		}
		cacheDir = d
	}
	if out == "" {
		out = filepath.Join(cacheDir, "vm-images")
	}
	if binDir == "" {
		self, err := os.Executable()
		if err != nil {
			return o, err
		}
		binDir = filepath.Dir(self)
	}
	epoch, err := artifacts.SourceDateEpochFromEnv()
	if err != nil {
		return o, err
	}
	o.CacheDir, o.OutDir, o.BinDir, o.SourceDateEpoch = cacheDir, out, binDir, epoch
	return o, nil
}
