// Command containerd is a multi-call binary carrying the containerd daemon and
// its ctr client; it runs ctr when invoked by that name (normally a symlink) or
// with "ctr" as its first argument. The runc shim stays a separate binary
// (package shim below): containerd starts one per pod sandbox and it must not
// carry, nor initialise, the daemon's plugins.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	_ "github.com/containerd/containerd/v2/cmd/containerd/builtins"
	"github.com/containerd/containerd/v2/cmd/containerd/command"
	"github.com/containerd/containerd/v2/cmd/ctr/app"
)

func main() {
	ctx := context.Background()
	args := os.Args
	if len(args) > 1 && args[1] == "ctr" {
		args = args[1:]
	}
	if filepath.Base(args[0]) == "ctr" {
		if err := app.New().Run(ctx, args); err != nil {
			fmt.Fprintln(os.Stderr, "ctr:", err)
			os.Exit(1)
		}
		return
	}
	if err := command.App().Run(ctx, args); err != nil {
		fmt.Fprintln(os.Stderr, "containerd:", err)
		os.Exit(1)
	}
}
