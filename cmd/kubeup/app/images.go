package app

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
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
	var machines []string
	var role string
	cmd := &cobra.Command{
		Use:   "load [--name NAME] [--pin] [--machine NAME]... [--role master|node] FILE|IMAGE...",
		Short: "Import image archives into the machines' containerd",
		Long: `load streams each FILE, an OCI or docker image archive (an uncompressed tar,
e.g. from docker save -o FILE IMAGE, or skopeo copy docker://IMAGE
oci-archive:FILE:IMAGE), to every machine's agent (two machines at a time),
which imports it with the machine's ctr into containerd's k8s.io namespace:
the images the kubelet lists and runs. Only the machine's own platform is
imported, so an archive of a multi-platform image that carries that
platform alone loads. It prints a line per machine and file with the images
imported and the time taken.

--machine (repeatable) and --role load only the machines named and those of
the role: images whose pods run only there (masters are tainted
NoSchedule, so workloads need them on the nodes alone). A name the cluster
does not have, or a role it has no machine of, exits with status 2 before
anything is sent.

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
fails naming each machine and file.

An IMAGE (an argument that is not a file) is one kubeup builds, by its name
in kubeup artifacts' list (coredns, e2e-agnhost, ...) or its reference
(registry.k8s.io/e2e-test-images/agnhost:2.66.1), or "conformance" for every
image the conformance suite runs as one archive: its archive in the cache is
loaded, built first when missing (which needs a kubeup checkout, as kubeup
artifacts does). A name that is neither a file nor such an image exits with
status 2, listing the images there are, before the cluster is looked at.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return &cli.ExitError{Code: 2, Err: errors.New("at least one FILE (an OCI or docker image archive) or IMAGE is required")}
			}
			named, err := imageNames(args)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			targets := cluster.ImageTargets{Machines: machines, Role: config.Role(role)}
			if role != "" && targets.Role != config.RoleMaster && targets.Role != config.RoleNode {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("--role %q: want master or node", role)}
			}
			name := f.clusterName()
			if err := resolveImages(cmd.Context(), e, o, name, targets, args, named); err != nil {
				return err
			}
			fmt.Fprintf(e.Stdout, "kubeup images load: cluster %q: %s\n", name, strings.Join(args, ", "))
			err = cluster.LoadImages(cmd.Context(), o.DataDir, name, args, targets, pin, e.Stdout)
			if errors.Is(err, cluster.ErrBadArchive) || errors.Is(err, cluster.ErrNoTarget) {
				return &cli.ExitError{Code: 2, Err: err}
			}
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&pin, "pin", false, "exempt the images from the kubelet's image garbage collection")
	cmd.Flags().StringArrayVar(&machines, "machine", nil, "load this machine (repeatable; default every machine)")
	cmd.Flags().StringVar(&role, "role", "", "load the machines of this role: master or node (default every machine)")
	return cmd
}

// imageNames tells files from images: for each argument, "" when it is a
// file (or looks like a path: LoadImages names a missing one), else the
// image kubeup builds that it names. An argument that is neither is an
// error naming it and the images there are.
func imageNames(args []string) ([]string, error) {
	named := make([]string, len(args))
	for i, a := range args {
		if _, err := os.Stat(a); err == nil || strings.HasSuffix(a, ".tar") || strings.HasPrefix(a, ".") || strings.HasPrefix(a, "/") {
			continue
		}
		image, err := artifacts.FindImage(nil, a)
		if err != nil {
			return nil, fmt.Errorf("%s is not a file, and %w", a, err)
		}
		named[i] = image
	}
	return named, nil
}

// resolveImages replaces each named image in args by its archive in the
// cache (building it when missing), once the files, the cluster and the
// targets are known to be good: a bad file or a wrong --name or --machine
// must not cost a build.
func resolveImages(ctx context.Context, e *cli.Env, o cluster.Options, name string, targets cluster.ImageTargets, args, named []string) error {
	files := imageFiles(args, named)
	if len(files) == len(args) {
		return nil
	}
	if err := cluster.CheckImageArchives(files); err != nil {
		return &cli.ExitError{Code: 2, Err: err}
	}
	st, err := cluster.LoadState(o.DataDir, name)
	if err != nil {
		return err
	}
	if _, err := targets.Pick(st); err != nil {
		return &cli.ExitError{Code: 2, Err: err}
	}
	epoch, err := artifacts.SourceDateEpochFromEnv()
	if err != nil {
		return &cli.ExitError{Code: 2, Err: err}
	}
	ao := artifacts.Options{CacheDir: o.CacheDir, Progress: e.Stderr, SourceDateEpoch: epoch}
	for i, image := range named {
		if image == "" {
			continue
		}
		if args[i], err = artifacts.ImageArchive(ctx, ao, image); err != nil {
			return fmt.Errorf("image %s: %w", image, err)
		}
	}
	return nil
}

// imageFiles are the arguments imageNames found to be files.
func imageFiles(args, named []string) []string {
	var files []string
	for i, a := range args {
		if named[i] == "" {
			files = append(files, a)
		}
	}
	return files
}
