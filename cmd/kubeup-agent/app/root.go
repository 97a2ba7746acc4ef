// Package app wires kubeup-agent's commands. It stays thin: every command
// parses flags, then calls into components/agent or components/addonmanager.
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

// Version is stamped at build time with -ldflags "-X ...app.Version=...".
var Version = "dev"

// ExitError carries a specific exit status through cobra.
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
	level          *slog.LevelVar
}

// Main runs kubeup-agent with args and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	level := new(slog.LevelVar)
	e := &env{stdout: stdout, stderr: stderr, level: level,
		// No timestamps: journald records its own.
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}))}
	root := newRootCommand(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.Execute(); err != nil {
		var xe *ExitError
		if errors.As(err, &xe) {
			if xe.Err != nil && xe.Err.Error() != "" {
				fmt.Fprintln(stderr, "kubeup-agent:", xe.Err)
			}
			return xe.Code
		}
		fmt.Fprintln(stderr, "kubeup-agent:", err)
		return 1
	}
	return 0
}

func newRootCommand(e *env) *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:   "kubeup-agent",
		Short: "kubeup's on-machine agent",
		Long: `kubeup-agent runs on every kubeup machine: the node agent (metrics, status,
journal, pod network), the readiness probe units run as ExecStartPost, and on
masters the addon manager.`,
		SilenceUsage:      true,
		SilenceErrors:     true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		PersistentPreRunE: func(*cobra.Command, []string) error {
			if err := e.level.UnmarshalText([]byte(logLevel)); err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("--log-level: %w", err)}
			}
			return nil
		},
	}
	root.PersistentFlags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	for _, add := range commands {
		root.AddCommand(add(e))
	}
	return root
}

// commands lists the sub-command constructors, one per file in this package.
// The addon manager's constructor (addonmanager.go) belongs in this list too.
var commands = []func(*env) *cobra.Command{
	newVersionCommand,
	newProbeCommand,
	newAgentCommand,
	newAddonManagerCommand,
	newUICommand,
}

// signalContext ends on SIGTERM (systemd stopping the unit) or SIGINT.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}
