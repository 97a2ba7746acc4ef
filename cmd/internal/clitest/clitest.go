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

// RunCombined runs b with args and returns its exit code and its stdout
// and stderr together, for tests that only look for a message.
func RunCombined(b cli.Binary, args ...string) (code int, output string) {
	code, stdout, stderr := Run(b, args...)
	return code, stdout + stderr
}
