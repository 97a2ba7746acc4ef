package conformance

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
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
