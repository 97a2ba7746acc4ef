package app

import (
	"path/filepath"
	"strings"
	"testing"

	"kubeup.dev/kubeup/cmd/internal/clitest"
)

// runCLI runs the binary; the output is stdout and stderr together.
func runCLI(args ...string) (int, string) {
	code, stdout, stderr := clitest.Run(Binary, args...)
	return code, stdout + stderr
}

func TestAgentCommandConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	code, out := runCLI("agent", "--config="+path)
	if code != 2 || !strings.Contains(out, path) {
		t.Errorf("missing config: exit %d: %s", code, out)
	}
	if code, out := runCLI("--log-level=loud", "version"); code != 2 || !strings.Contains(out, "--log-level") {
		t.Errorf("bad log level: exit %d: %s", code, out)
	}
}
