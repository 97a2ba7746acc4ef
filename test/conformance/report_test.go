package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The counts are specs only (suite nodes are not), a panic is a failure,
// and every failure carries its name and its message on one line.
func TestParseJUnit(t *testing.T) {
	s, err := ParseJUnit(filepath.Join("testdata", "junit_01.xml"))
	if err != nil {
		t.Fatal(err)
	}
	if s.Passed != 2 || s.Failed != 2 || s.Skipped != 1 || s.Seconds != 312.5 {
		t.Errorf("passed %d failed %d skipped %d in %gs, want 2 2 1 312.5", s.Passed, s.Failed, s.Skipped, s.Seconds)
	}
	// Sorted by name.
	if len(s.Failures) != 2 || s.Failures[1].State != "failed" || !strings.HasPrefix(s.Failures[1].Name, "[sig-network] DNS") ||
		s.Failures[1].Message != "timed out waiting for the condition lookups failed" ||
		s.Failures[0].State != "panicked" || s.Failures[0].Message != "runtime error: invalid memory address" {
		t.Errorf("failures %+v", s.Failures)
	}
	if s.Started.Format("15:04") != "17:00" {
		t.Errorf("started %v", s.Started)
	}
	if _, err := ParseJUnit(filepath.Join("testdata", "missing.xml")); err == nil {
		t.Error("a missing report parsed")
	}
	bad := filepath.Join(t.TempDir(), "bad.xml")
	os.WriteFile(bad, []byte("<html>nope</html>"), 0o644)
	if _, err := ParseJUnit(bad); err == nil || !strings.Contains(err.Error(), "bad.xml") {
		t.Errorf("not a report: %v", err)
	}
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	s, err := ParseJUnit(filepath.Join("testdata", "junit_01.xml"))
	if err != nil {
		t.Fatal(err)
	}
	s.Part, s.Focus = "sig-network", `\[sig-network\].*\[Conformance\]`
	if err := Write(dir, s); err != nil {
		t.Fatal(err)
	}
	var back Summary
	data, _ := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err := json.Unmarshal(data, &back); err != nil || back.Passed != 2 || back.Part != "sig-network" {
		t.Errorf("summary.json: %v %+v", err, back)
	}
	txt, _ := os.ReadFile(filepath.Join(dir, "summary.txt"))
	if !strings.HasPrefix(string(txt), "part sig-network (focus \\[sig-network\\].*\\[Conformance\\]): 2 passed, 2 failed, 1 skipped in 5m12s\n") {
		t.Errorf("summary.txt:\n%s", txt)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp"))
	if len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestCollect(t *testing.T) {
	dir := t.TempDir()
	day := time.Date(2026, 12, 6, 18, 0, 0, 0, time.UTC)
	auth := Summary{Part: "sig-auth", Started: day.Add(time.Hour), Seconds: 781, Passed: 26, Failed: 1, Skipped: 0,
		Failures: []Failure{{Name: "[sig-auth] Projected PodCertificate should allow mTLS [Conformance] [sig-auth, Conformance]", State: "failed"}},
		NotRun:   []string{"[sig-auth] a [Conformance]", "[sig-auth] b [Conformance]"}}
	inst := Summary{Part: "sig-instrumentation", Started: day, Seconds: 100, Passed: 4}
	rerun := Summary{Part: "sig-auth-rerun", Started: day.Add(2 * time.Hour), Seconds: 70, Passed: 1}
	for _, s := range []Summary{auth, inst, rerun} {
		if err := Write(filepath.Join(dir, s.Part), s); err != nil {
			t.Fatal(err)
		}
	}
	// The run's own total, in dir itself, is not a part.
	if err := Write(dir, Summary{Part: "all", Passed: 99}); err != nil {
		t.Fatal(err)
	}
	table, err := WriteParts(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := "| part | run (UTC) | passed | failed | skipped | not run | time | failed specs |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n" +
		"| sig-instrumentation | 2026-12-06 18:00 | 4 | 0 | 0 | 0 | 1m40s |  |\n" +
		"| sig-auth | 2026-12-06 19:00 | 26 | 1 | 0 | 2 | 13m1s | [sig-auth] Projected PodCertificate should allow mTLS [Conformance] |\n" +
		"| sig-auth-rerun | 2026-12-06 20:00 | 1 | 0 | 0 | 0 | 1m10s |  |\n" +
		"| **2 parts** | | **30** | **1** | 0 | 2 | 14m41s | |\n" +
		"\nFailed specs re-run alone (the `-rerun` rows, not in the totals): 1 passed, 0 failed.\n"
	if table != want {
		t.Errorf("table:\n%s\nwant:\n%s", table, want)
	}
	if data, _ := os.ReadFile(filepath.Join(dir, "parts.md")); string(data) != want {
		t.Errorf("parts.md:\n%s", data)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.tmp")); len(left) > 0 {
		t.Errorf("temporary files left: %v", left)
	}
	if err := os.WriteFile(filepath.Join(dir, "sig-auth", "summary.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WriteParts(dir); err == nil || !strings.Contains(err.Error(), filepath.Join("sig-auth", "summary.json")) {
		t.Errorf("a broken summary: %v, want an error naming it", err)
	}
}

// A part whose time ran out: the specs it selected that never ran are
// skipped without a reason in ginkgo's report, as are those its focus left
// out; NotRun tells them apart by the part's focus and skip, and the
// summary says how many (found 2026-12-08: sig-apps' 50-minute part left 6
// of its 52 specs unrun and its summary said "0 skipped").
func TestNotRun(t *testing.T) {
	s, err := ParseJUnit(filepath.Join("testdata", "junit_timeout.xml"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := PartsFor("sig-apps", 2, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	got, err := p[0].NotRun(s)
	if err != nil || len(got) != 1 || got[0] != "[sig-apps] DisruptionController should create a PodDisruptionBudget [Conformance]" {
		t.Fatalf("not run: %q %v, want the PodDisruptionBudget spec alone", got, err)
	}
	if s.Passed != 1 || s.Failed != 1 || s.Skipped != 0 {
		t.Errorf("passed %d failed %d skipped %d, want 1 1 0", s.Passed, s.Failed, s.Skipped)
	}
	s.NotRun = got
	if txt := s.Text(); !strings.Contains(txt, "0 skipped, 1 not run (the part's time ran out) in ") ||
		!strings.Contains(txt, "  not run: [sig-apps] DisruptionController should create a PodDisruptionBudget [Conformance]\n") {
		t.Errorf("text:\n%s", txt)
	}
	// The serial part of the same SIG selects the [Serial] spec instead.
	serial, _ := PartsFor("sig-apps:serial", 1, time.Hour)
	if got, _ := serial[0].NotRun(s); len(got) != 1 || !strings.Contains(got[0], "Daemon set [Serial]") {
		t.Errorf("serial part's not run: %q", got)
	}
	if _, err := (Part{Name: "bad", Focus: "("}).NotRun(s); err == nil {
		t.Error("a bad focus gave no error")
	}
}
