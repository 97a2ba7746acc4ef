package app

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string) {
	var out bytes.Buffer
	code := Binary.Main(args, &out, &out)
	return code, out.String()
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
