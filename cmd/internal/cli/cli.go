package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"syscall"

	"github.com/spf13/cobra"
)

// Version is stamped at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// ExitError carries a specific exit status through cobra.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Env is what every command receives instead of globals.
type Env struct {
	Stdout, Stderr io.Writer
	Log            *slog.Logger
	level          *slog.LevelVar
}

// Command builds one sub-command.
type Command func(*Env) *cobra.Command

// Binary names a binary and its commands.
type Binary struct {
	Name, Short, Long string
	Commands          []Command
}

// Main runs the binary with args and returns the process exit status.
func (b Binary) Main(args []string, stdout, stderr io.Writer) int {
	level := new(slog.LevelVar)
	e := &Env{Stdout: stdout, Stderr: stderr, level: level,
		// No timestamps: journald records its own.
		Log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level,
			ReplaceAttr: func(groups []string, a slog.Attr) slog.Attr {
				if len(groups) == 0 && a.Key == slog.TimeKey {
					return slog.Attr{}
				}
				return a
			}}))}
	root := b.root(e)
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	// SIGTERM and Ctrl-C cancel the commands' context: long steps stop and
	// clean up their temporary files instead of leaving half-written output.
	ctx, stop := SignalContext()
	defer stop()
	if err := root.ExecuteContext(ctx); err != nil {
		var xe *ExitError
		if errors.As(err, &xe) {
			if xe.Err != nil && xe.Err.Error() != "" {
				fmt.Fprintln(stderr, b.Name+":", xe.Err)
			}
			return xe.Code
		}
		fmt.Fprintln(stderr, b.Name+":", err)
		return 1
	}
	return 0
}

func (b Binary) root(e *Env) *cobra.Command {
	var logLevel string
	root := &cobra.Command{
		Use:               b.Name,
		Short:             b.Short,
		Long:              b.Long,
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
	root.AddCommand(versionCommand(b.Name, e))
	for _, add := range b.Commands {
		root.AddCommand(add(e))
	}
	return root
}

// SignalContext ends on SIGTERM (systemd stopping the unit) or SIGINT.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
}

func versionCommand(name string, e *Env) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print " + name + "'s version",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintf(e.Stdout, "%s %s (%s, %s/%s)\n", name, Version, runtime.Version(), runtime.GOOS, runtime.GOARCH)
			return nil
		},
	}
}
