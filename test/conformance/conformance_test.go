package conformance

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/test/e2e"
)

// TestConformance runs upstream's [Conformance] specs against a kubeup
// cluster (`make conformance`): one it brings up (1 master and
// KUBEUP_CONFORMANCE_NODES nodes, 2 by default: several specs spread pods
// over two schedulable nodes; the heavy addons off) or the running one
// KUBEUP_CONFORMANCE_CLUSTER names. It loads the suite's images into every
// node (the suite's pods never land on the masters, tainted NoSchedule;
// --non-blocking-taints only lets the suite start with them there), runs
// each part (KUBEUP_CONFORMANCE_PARTS, default the whole
// suite: parallel specs, then [Serial] ones) with ginkgo, and writes each
// part's JUnit report and summary under out/conformance/<part>/ and the
// totals to out/conformance/summary.{json,txt}.
func TestConformance(t *testing.T) {
	if os.Getenv("KUBEUP_CONFORMANCE") != "1" {
		t.Skip("runs upstream's conformance suite on a cluster of VMs: make conformance (KUBEUP_CONFORMANCE=1)")
	}
	procs := envInt(t, "KUBEUP_CONFORMANCE_PROCS", 2)
	timeout := time.Duration(envInt(t, "KUBEUP_CONFORMANCE_PART_MINUTES", 240)) * time.Minute
	parts, err := PartsFor(os.Getenv("KUBEUP_CONFORMANCE_PARTS"), procs, timeout)
	if err != nil {
		t.Fatal(err)
	}
	bin := toolsDir(t)
	e2eTest, ginkgo := filepath.Join(bin, "e2e.test"), filepath.Join(bin, "ginkgo")
	archive := imageArchive(t)

	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(len(parts))*timeout+time.Hour)
	defer cancel()
	c, ok := e2e.ExistingTestCluster(t, "KUBEUP_CONFORMANCE", false)
	if !ok {
		nodes := envInt(t, "KUBEUP_CONFORMANCE_NODES", 2)
		start := time.Now()
		c = e2e.UpTestCluster(t, ctx, "conformance", fmt.Sprintf("  nodes: {count: %d}\n  addons: {monitoring: false, logging: false, ui: false}\n", nodes))
		t.Logf("cluster up (1 master, %d nodes) in %s", nodes, time.Since(start).Round(time.Second))
	}
	kubeconfig, _, err := cluster.Kubeconfig(c.DataDir, c.Name)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if out, err := e2e.Kubeup(t, ctx, c.DataDir, "images", "load", "--name", c.Name, "--role", "node", "--pin", archive); err != nil {
		t.Fatalf("kubeup images load: %v\n%s", err, out)
	}
	size := int64(0)
	if fi, err := os.Stat(archive); err == nil {
		size = fi.Size()
	}
	t.Logf("the suite's images (%s, %d MiB) loaded on every node in %s", filepath.Base(archive), size>>20, time.Since(start).Round(time.Second))

	out := filepath.Join(e2e.RepoRoot(), "out", "conformance")
	if d := os.Getenv("KUBEUP_CONFORMANCE_OUT"); d != "" {
		out = d
	}
	var total Summary
	total.Part, total.Started = "all", time.Now().UTC()
	for _, p := range parts {
		// A re-run belongs to the run before it.
		if err := os.RemoveAll(filepath.Join(out, p.Name+RerunSuffix)); err != nil {
			t.Fatal(err)
		}
		s, err := runPart(ctx, t, p, ginkgo, e2eTest, kubeconfig, filepath.Join(out, p.Name))
		if err != nil {
			t.Errorf("part %s: %v", p.Name, err)
			continue
		}
		t.Logf("%s", s.Text())
		if r, ok := RerunPart(p, s.Failures); ok && os.Getenv("KUBEUP_CONFORMANCE_RERUN") != "0" {
			// Beside the part's counts, not in them: parts.md shows both.
			if rs, err := runPart(ctx, t, r, ginkgo, e2eTest, kubeconfig, filepath.Join(out, r.Name)); err != nil {
				t.Logf("re-run of %s's failed specs: %v", p.Name, err)
			} else {
				t.Logf("%s's failed specs re-run alone: %s", p.Name, rs.Text())
			}
		}
		total.Focus += p.Focus + " "
		total.Seconds += s.Seconds
		total.Passed, total.Failed, total.Skipped = total.Passed+s.Passed, total.Failed+s.Failed, total.Skipped+s.Skipped
		total.Failures = append(total.Failures, s.Failures...)
		total.NotRun = append(total.NotRun, s.NotRun...)
	}
	if err := Write(out, total); err != nil {
		t.Fatal(err)
	}
	t.Logf("conformance: %d passed, %d failed, %d skipped; summary in %s", total.Passed, total.Failed, total.Skipped, out)
	if table, err := WriteParts(out); err != nil {
		t.Errorf("the table of every part: %v", err)
	} else {
		t.Logf("every part's last run (%s):\n%s", filepath.Join(out, "parts.md"), table)
	}
	if total.Failed > 0 {
		t.Errorf("%d conformance specs failed (out/conformance/summary.txt lists them)", total.Failed)
	}
	if len(total.NotRun) > 0 {
		t.Errorf("%d conformance specs did not run: a part's time ran out (KUBEUP_CONFORMANCE_PART_MINUTES; out/conformance/summary.txt lists them)", len(total.NotRun))
	}
}

// runPart runs one part with ginkgo and summarises its JUnit report. A
// failing spec makes ginkgo exit non-zero: the report says what failed.
func runPart(ctx context.Context, t *testing.T, p Part, ginkgo, e2eTest, kubeconfig, dir string) (Summary, error) {
	if err := os.RemoveAll(dir); err != nil {
		return Summary{}, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, err
	}
	logFile, err := os.Create(filepath.Join(dir, "ginkgo.log"))
	if err != nil {
		return Summary{}, err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, ginkgo, p.Args(e2eTest, kubeconfig, dir)...)
	// The kubectl specs run kubectl: the cluster's own version's.
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kubeconfig, "PATH="+kubectlDir(t)+":"+os.Getenv("PATH"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.WaitDelay = time.Minute
	start := time.Now()
	t.Logf("part %s: ginkgo %v (log: %s)", p.Name, cmd.Args[1:], logFile.Name())
	runErr := cmd.Run()
	s, err := ParseJUnit(filepath.Join(dir, "junit.xml"))
	if err != nil {
		return Summary{}, fmt.Errorf("ginkgo: %v; no report: %w", runErr, err)
	}
	s.Part, s.Focus = p.Name, p.Focus
	if s.NotRun, err = p.NotRun(s); err != nil {
		return Summary{}, err
	}
	if s.Seconds == 0 {
		s.Seconds = time.Since(start).Seconds()
	}
	return s, Write(dir, s)
}

// toolsDir is where e2e.test and ginkgo are: KUBEUP_CONFORMANCE_BIN_DIR or
// the newest conformance artifact (`kubeup artifacts --only conformance`).
func toolsDir(t *testing.T) string {
	if d := os.Getenv("KUBEUP_CONFORMANCE_BIN_DIR"); d != "" {
		return d
	}
	return newest(t, "conformance", "e2e.test")
}

// kubectlDir holds the kubernetes artifact's kubectl.
func kubectlDir(t *testing.T) string { return newest(t, "kubernetes", "kubectl") }

// newest is the directory of the most recently built artifact of
// component that holds usr/local/bin/file.
func newest(t *testing.T, component, file string) string {
	home, _ := os.UserHomeDir()
	found, _ := filepath.Glob(filepath.Join(home, ".cache/kubeup/artifacts", component, "*/root/usr/local/bin", file))
	if len(found) == 0 {
		t.Fatalf("no %s in the %s artifact: run bin/kubeup artifacts --only %s (make conformance does)", file, component, component)
	}
	sort.Slice(found, func(i, j int) bool { return modTime(found[i]).After(modTime(found[j])) })
	return filepath.Dir(found[0])
}

func modTime(p string) time.Time {
	fi, err := os.Stat(p)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive number", name, v)
	}
	return n
}

// imageArchive is the suite's images in one archive (each shared layer
// once), built by `kubeup artifacts --only conformance` (make conformance
// runs it first) and combined in the cache.
func imageArchive(t *testing.T) string {
	archive, err := artifacts.ConformanceArchive(context.Background(), artifacts.Options{CacheOnly: true})
	if err != nil {
		t.Fatalf("conformance images: %v (bin/kubeup artifacts --only conformance builds them)", err)
	}
	return archive
}
