package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/provision/cluster"
)

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// kubeup runs the built CLI (make build) and returns its output.
func kubeup(t *testing.T, ctx context.Context, dataDir string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, filepath.Join(repoRoot(), "bin", "kubeup"), args...)
	cmd.Env = append(os.Environ(), "KUBEUP_DATA_DIR="+dataDir)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("kubeup %s:\n%s", strings.Join(args, " "), out.String())
	return out.String(), err
}

// TestE2ECluster is the promise in one test: `kubeup up --verify` brings a
// local cluster to Ready and every check passes, kubectl on the host works
// with the kubeconfig it wrote, and `kubeup down` leaves nothing (twice).
func TestE2ECluster(t *testing.T) {
	if !Enabled() {
		t.Skip("end-to-end test: run with make e2e (KUBEUP_E2E=1); it boots a cluster of VMs")
	}
	if _, err := os.Stat(filepath.Join(repoRoot(), "bin", "pulumi-resource-kubeup")); err != nil {
		t.Fatal("run make build first: ", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	name := "e2e"
	timings := filepath.Join(t.TempDir(), "timings.json")
	t.Cleanup(func() {
		// Whatever happened, nothing of the cluster may stay running.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := kubeup(t, cctx, dataDir, "down", "--name", name); err != nil {
			t.Errorf("down in cleanup: %v", err)
		}
	})

	out, err := kubeup(t, ctx, dataDir, "up", "--name", name, "--verify", "--timings", timings)
	if err != nil {
		t.Fatalf("kubeup up --verify: %v", err)
	}
	if !strings.Contains(out, "checks passed") {
		t.Errorf("up --verify did not report its checks")
	}
	var tm cluster.Timings
	if data, err := os.ReadFile(timings); err == nil && json.Unmarshal(data, &tm) == nil {
		for _, p := range tm.Phases {
			t.Logf("timing: %7.1fs %s", p.Seconds, p.Name)
		}
		t.Logf("peak memory: QEMU %d MiB, kubeup %d MiB", tm.PeakQEMUMiB, tm.PeakKubeupMiB)
	} else {
		t.Errorf("timings file %s: %v", timings, err)
	}

	// kubectl from the host with the kubeconfig kubeup wrote.
	kubectl, err := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache", "kubeup", "artifacts", "kubernetes", "*", "root", "usr", "local", "bin", "kubectl"))
	if err == nil && len(kubectl) > 0 {
		path, _ := kubeup(t, ctx, dataDir, "kubeconfig", "--name", name, "--path")
		nodes, err := exec.CommandContext(ctx, kubectl[0], "--kubeconfig", strings.TrimSpace(path), "get", "nodes", "-o", "wide").CombinedOutput()
		t.Logf("kubectl get nodes:\n%s", nodes)
		if err != nil || strings.Count(string(nodes), " Ready ") != 2 {
			t.Errorf("kubectl get nodes: %v", err)
		}
	}
	if out, err := kubeup(t, ctx, dataDir, "status", "--name", name); err != nil || !strings.Contains(out, "kubelet=active") {
		t.Errorf("status: %v", err)
	}

	start := time.Now()
	if _, err := kubeup(t, ctx, dataDir, "down", "--name", name); err != nil {
		t.Fatalf("down: %v", err)
	}
	t.Logf("down took %s", time.Since(start).Round(100*time.Millisecond))
	if left := cluster.Leftovers(dataDir, name); len(left) > 0 {
		t.Errorf("processes left after down: %v", left)
	}
	if _, err := os.Stat(cluster.Dir(dataDir, name)); !os.IsNotExist(err) {
		t.Errorf("cluster directory left after down: %v", err)
	}
	out, err = kubeup(t, ctx, dataDir, "down", "--name", name)
	if err != nil || !strings.Contains(out, "nothing to destroy") {
		t.Errorf("second down: %v %q", err, out)
	}
}
