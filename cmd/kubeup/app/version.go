package app

import (
	"fmt"
	"runtime"

	"github.com/spf13/cobra"
)

// Version is stamped at build time with -ldflags "-X ...app.Version=...".
var Version = "dev"

func newVersionCommand(e *env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print kubeup's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fmt.Fprintf(e.stdout, "kubeup %s (%s, %s/%s)\n", Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
