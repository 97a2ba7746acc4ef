package app

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/images/artifacts"
)

func newArtifactsCommand(e *cli.Env) *cobra.Command {
	var (
		source, cacheDir, src string
		only                  []string
		asJSON                bool
	)
	cmd := &cobra.Command{
		Use:   "artifacts",
		Short: "Build or download the pinned components and container images into the cache",
		Long: `artifacts makes every component pinned in images/versions.yaml present in the
cache: built from its pinned Go module (--source build, the default) or
downloaded from upstream's release and checked against the pinned sha256
(--source release). Container images (pause, coredns, testbox) are built from
those files. Only what changed is rebuilt; a second run with nothing changed
just reads the cache manifests.

The cache is $KUBEUP_CACHE_DIR or <user cache dir>/kubeup unless --cache-dir
is given. Builds stamp $SOURCE_DATE_EPOCH (default 0) as their build date.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s, err := artifacts.ParseSource(source)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			epoch, err := artifacts.SourceDateEpochFromEnv()
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			progress := e.Stderr
			set, err := artifacts.Ensure(cmd.Context(), artifacts.Options{
				CacheDir: cacheDir, SrcDir: src, Source: s, Only: only,
				Progress: progress, SourceDateEpoch: epoch,
			})
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(set)
			}
			return printArtifacts(e, set)
		},
	}
	f := cmd.Flags()
	f.StringVar(&source, "source", string(artifacts.SourceBuild), "where components come from: build (pinned Go modules) or release (upstream downloads, sha256-checked)")
	f.StringVar(&cacheDir, "cache-dir", "", "cache directory (default $KUBEUP_CACHE_DIR or <user cache dir>/kubeup)")
	f.StringVar(&src, "src", "", "kubeup checkout holding images/modules (default: found from the working directory)")
	f.StringSliceVar(&only, "only", nil, "only these components or images (comma-separated), with what they are built from")
	f.BoolVar(&asJSON, "json", false, "print the result as JSON")
	return cmd
}

func printArtifacts(e *cli.Env, set *artifacts.Set) error {
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tVERSION\tSOURCE\tFILE\tSHA256\tSIZE\tTOTAL\tCACHED")
	for _, a := range set.Artifacts {
		m := a.MainFile()
		total := ""
		if n := countFiles(a); n > 1 {
			total = fmt.Sprintf("%s (%d files)", mib(a.TotalSize()), n)
		}
		file := m.Path
		if a.Image != nil {
			file = a.Image.Ref
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.Name, a.Kind, a.Version, a.Source, file, m.SHA256,
			mib(m.Size), total, yesNo(a.Cached))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(set.Artifacts) > 0 {
		// Dir is <cache>/artifacts/<name>/<key>.
		fmt.Fprintf(e.Stdout, "cache: %s\n", filepath.Dir(filepath.Dir(filepath.Dir(set.Artifacts[0].Dir))))
	}
	return nil
}

func countFiles(a *artifacts.Artifact) int {
	n := 0
	for _, f := range a.Files {
		if f.Link == "" {
			n++
		}
	}
	return n
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
