package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// RepoRoot is the repository's top directory.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Kubeup runs the built CLI (make build) with KUBEUP_DATA_DIR=dataDir and
// returns its combined output, which it also logs.
func Kubeup(t testing.TB, ctx context.Context, dataDir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(RepoRoot(), "bin", "kubeup"), args...)
	cmd.Env = append(os.Environ(), "KUBEUP_DATA_DIR="+dataDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("kubeup %s:\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}
