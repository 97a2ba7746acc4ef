package app

import (
	"path/filepath"
	"strings"
	"testing"

	"kubeup.dev/kubeup/cmd/internal/clitest"
)

func TestAgentCommandConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	code, out := clitest.RunCombined(Binary, "agent", "--config="+path)
	if code != 2 || !strings.Contains(out, path) {
		t.Errorf("missing config: exit %d: %s", code, out)
	}
	if code, out := clitest.RunCombined(Binary, "--log-level=loud", "version"); code != 2 || !strings.Contains(out, "--log-level") {
		t.Errorf("bad log level: exit %d: %s", code, out)
	}
}
