// Package app wires kubeup's commands. It stays thin: every command parses
// flags, then calls into provision/, images/ or infra/.
package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

// ExitError carries a specific exit status (2 for bad input) through cobra.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// env is what every command receives instead of globals.
type env struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

// Main runs kubeup with args and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	root := newRootCommand(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// Ctrl-C and SIGTERM cancel the context: long steps stop and clean up
	// their temporary files instead of leaving half-written output.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		var xe *ExitError
		if errors.As(err, &xe) {
			if xe.Err != nil && xe.Err.Error() != "" {
				fmt.Fprintln(stderr, "kubeup:", xe.Err)
			}
			return xe.Code
		}
		fmt.Fprintln(stderr, "kubeup:", err)
		return 1
	}
	return 0
}

func newRootCommand(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "kubeup",
		Short: "Build Kubernetes appliance images and run clusters from them",
		Long: `kubeup turns the Kubernetes component architecture into bootable appliances:
it bakes a master and a node disk image (every component a systemd unit),
personalises machines with cloud-init, and deploys them with Pulumi.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, add := range commands {
		root.AddCommand(add(e))
	}
	return root
}

// commands lists the sub-command constructors, one per file in this package.
var commands = []func(*env) *cobra.Command{
	newVersionCommand,
	newRenderCommand,
	newArtifactsCommand,
	newBuildCommand,
	newUpCommand,
	newDownCommand,
	newStatusCommand,
	newKubeconfigCommand,
	newVerifyCommand,
	newUICommand,
	newMetricsCommand,
	newLogsCommand,
}
