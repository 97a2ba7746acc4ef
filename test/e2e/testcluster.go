package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"kubeup.dev/kubeup/provision/cluster"
)

// TestCluster is a cluster a long VM suite (drills, e2e-ha) runs on: one
// it brought up itself, or one already running that the suite was pointed
// at (for working on the suite).
type TestCluster struct {
	DataDir, Name string
	Key           string // the SSH private key of its authorized key
	Config        string // the config file it was brought up from ("" when unknown)
	Timings       string // kubeup up's timings file
}

// UpPhaseTimeout bounds each of up's waits (API server, nodes, pods) in the
// tests that bring a cluster up: up's default of 15 minutes ran out in CI
// on 2026-12-07 (the 1+1 machines 16 minutes old, the node's units all
// running), and a 3+1 cluster under TCG on 2 cores was still starting its
// API servers after 15 minutes the same day. The tests' own deadlines still
// bound the run.
const UpPhaseTimeout = 25 * time.Minute

// UpTestCluster brings up cluster name from spec (the lines under spec:,
// indented two spaces, without ssh) with a fresh SSH key and brings it down
// when the test ends.
func UpTestCluster(t *testing.T, ctx context.Context, name, spec string) TestCluster {
	t.Helper()
	c := TestCluster{DataDir: t.TempDir(), Name: name}
	t.Cleanup(func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := Kubeup(t, cctx, c.DataDir, "down", "--name", name); err != nil {
			t.Errorf("down: %v", err)
		}
	})
	key, pub, err := NewKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c.Key = key
	c.Config = filepath.Join(t.TempDir(), "cluster.yaml")
	cfg := fmt.Sprintf("apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %s}\nspec:\n%s  ssh:\n    authorizedKeys: [%q]\n", name, spec, pub)
	if err := os.WriteFile(c.Config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Timings = filepath.Join(t.TempDir(), "timings.json")
	if out, err := Kubeup(t, ctx, c.DataDir, "up", "--config", c.Config, "--timings", c.Timings, "--timeout", UpPhaseTimeout.String()); err != nil {
		t.Fatalf("kubeup up: %v\n%s", err, out)
	}
	return c
}

// ExistingTestCluster is the running cluster PREFIX_CLUSTER names
// (DATADIR/clusters/NAME), with PREFIX_KEY its SSH private key and
// PREFIX_CONFIG its config file (required when needConfig); ok is false
// when PREFIX_CLUSTER is unset. The cluster is left running.
func ExistingTestCluster(t *testing.T, prefix string, needConfig bool) (c TestCluster, ok bool) {
	t.Helper()
	dir := os.Getenv(prefix + "_CLUSTER")
	if dir == "" {
		return c, false
	}
	c.Name = filepath.Base(dir)
	c.DataDir = filepath.Dir(filepath.Dir(dir))
	if cluster.Dir(c.DataDir, c.Name) != filepath.Clean(dir) {
		t.Fatalf("%s_CLUSTER=%s: want DATADIR/clusters/NAME", prefix, dir)
	}
	c.Key, c.Config = os.Getenv(prefix+"_KEY"), os.Getenv(prefix+"_CONFIG")
	if c.Key == "" {
		t.Fatalf("%s_CLUSTER needs %s_KEY, the private key of the cluster's SSH access", prefix, prefix)
	}
	if needConfig && c.Config == "" {
		t.Fatalf("%s_CLUSTER needs %s_CONFIG, the config file it was brought up from", prefix, prefix)
	}
	c.Timings = filepath.Join(dir, "timings.json")
	return c, true
}
