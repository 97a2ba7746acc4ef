// Package clitest runs a cli.Binary in-process for the commands' tests.
package clitest

import (
	"bytes"

	"kubeup.dev/kubeup/cmd/internal/cli"
)

// Run runs b with args and returns its exit code, stdout and stderr.
func Run(b cli.Binary, args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = b.Main(args, &out, &errb)
	return code, out.String(), errb.String()
}
