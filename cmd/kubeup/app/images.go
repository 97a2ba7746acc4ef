package app

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/provision/cluster"
)

func newImagesCommand(e *cli.Env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "images",
		Short: "Load container images into every machine of a cluster",
		Long: `images load puts image archives into every machine's containerd, where the
kubelet finds them: pods run from them without a registry (an air-gapped
cluster, the conformance suite, your own images).`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newImagesLoadCommand(e))
	return cmd
}

func newImagesLoadCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var pin bool
	cmd := &cobra.Command{
		Use:   "load [--name NAME] [--pin] FILE...",
		Short: "Import image archives into every machine's containerd",
		Long: `load streams each FILE, an OCI or docker image archive (an uncompressed tar,
e.g. from docker save -o FILE IMAGE, or skopeo copy docker://IMAGE
oci-archive:FILE:IMAGE), to every machine's agent (two machines at a time),
which imports it with the machine's ctr into containerd's k8s.io namespace:
the images the kubelet lists and runs. Only the machine's own platform is
imported, so an archive of a multi-platform image that carries that
platform alone loads. It prints a line per machine and file with the images
imported and the time taken.

Images keep the names the archive gives them (docker save IMAGE, the name
after oci-archive:FILE:); an image without one is named
import-DATE@sha256:DIGEST. Use them in pods with imagePullPolicy
IfNotPresent (the default for a tag other than :latest) or Never.

--pin exempts the images from the kubelet's image garbage collection,
which otherwise deletes unused images when the disk fills up, and an
air-gapped cluster cannot pull them again. Without it, an image that is
already there keeps its labels, pinned or not.

Every FILE is checked first (it exists, can be read and is a tar): a bad
one exits with status 2, naming it, before anything is sent. A machine that
refuses an archive gets no further one; the others go on, and the command
fails naming each machine and file. Loading an image kubeup itself built by
its name is not supported yet; its archive is a FILE in the cache:
~/.cache/kubeup/images/NAME/KEY/root/var/lib/kubeup/images/NAME.tar.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &cli.ExitError{Code: 2, Err: errors.New("at least one FILE (an OCI or docker image archive) is required")}
			}
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			name := f.clusterName()
			fmt.Fprintf(e.Stdout, "kubeup images load: cluster %q: %s\n", name, strings.Join(args, ", "))
			err = cluster.LoadImages(cmd.Context(), o.DataDir, name, args, pin, e.Stdout)
			if errors.Is(err, cluster.ErrBadArchive) {
				return &cli.ExitError{Code: 2, Err: err}
			}
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&pin, "pin", false, "exempt the images from the kubelet's image garbage collection")
	return cmd
}
