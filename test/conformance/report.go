package conformance

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2/reporters"
)

// Spec states as ginkgo's JUnit report writes them (types.SpecState).
const (
	statePassed  = "passed"
	stateSkipped = "skipped"
	statePending = "pending"
)

// Failure is one spec that did not pass.
type Failure struct {
	Name    string  `json:"name"`
	State   string  `json:"state"` // failed, panicked, interrupted, timedout, aborted
	Seconds float64 `json:"seconds"`
	Message string  `json:"message"`
}

// Summary is one run (or part) of the suite.
type Summary struct {
	Part     string    `json:"part"`
	Focus    string    `json:"focus"`
	Started  time.Time `json:"started"`
	Seconds  float64   `json:"seconds"`
	Passed   int       `json:"passed"`
	Failed   int       `json:"failed"`
	Skipped  int       `json:"skipped"`
	Failures []Failure `json:"failures,omitempty"`
	// NotRun are the specs the part selected that never ran: its time ran
	// out (or it was aborted) before them. Part.NotRun finds them.
	NotRun []string `json:"notRun,omitempty"`

	// unselected are the specs the report lists as skipped without a
	// reason: those the focus left out, and those left unrun.
	unselected []string
}

// messageMax bounds a failure's message in the summary (the JUnit report
// keeps all of it).
const messageMax = 600

// ParseJUnit reads a ginkgo JUnit report and counts its specs: those the
// run's focus left out are not counted (ginkgo lists them as skipped with
// no reason). Suite nodes
// (BeforeSuite, ReportAfterSuite, ...) are not specs, but one that failed
// is a failure: the specs after it did not run.
func ParseJUnit(path string) (Summary, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Summary{}, err
	}
	var r reporters.JUnitTestSuites
	if err := xml.Unmarshal(data, &r); err != nil {
		return Summary{}, fmt.Errorf("%s: not a JUnit report: %w", path, err)
	}
	if len(r.TestSuites) == 0 {
		return Summary{}, fmt.Errorf("%s: no test suite in the report", path)
	}
	var s Summary
	for _, suite := range r.TestSuites {
		s.Seconds += suite.Time
		if t, err := time.Parse("2006-01-02T15:04:05", suite.Timestamp); err == nil && (s.Started.IsZero() || t.Before(s.Started)) {
			s.Started = t
		}
		for _, tc := range suite.TestCases {
			spec := strings.HasPrefix(tc.Name, "[It] ")
			switch tc.Status {
			case statePassed:
				if spec {
					s.Passed++
				}
			case stateSkipped, statePending:
				// A spec the focus left out is "skipped" with no reason;
				// one that ran and called Skip says why ("skipped - ...").
				if spec && tc.Skipped != nil && tc.Skipped.Message != stateSkipped {
					s.Skipped++
				} else if spec {
					s.unselected = append(s.unselected, strings.TrimPrefix(tc.Name, "[It] "))
				}
			default:
				s.Failed++
				s.Failures = append(s.Failures, Failure{Name: strings.TrimPrefix(tc.Name, "[It] "), State: tc.Status, Seconds: tc.Time, Message: failureMessage(tc)})
			}
		}
	}
	slices.SortFunc(s.Failures, func(a, b Failure) int { return strings.Compare(a.Name, b.Name) })
	return s, nil
}

func failureMessage(tc reporters.JUnitTestCase) string {
	var m string
	switch {
	case tc.Failure != nil:
		m = tc.Failure.Message
		if m == "" {
			m = tc.Failure.Description
		}
	case tc.Error != nil:
		m = tc.Error.Message
		if m == "" {
			m = tc.Error.Description
		}
	}
	m = strings.Join(strings.Fields(m), " ")
	if len(m) > messageMax {
		m = m[:messageMax] + " …"
	}
	return m
}

// Text is the summary as the README and the note show it.
func (s Summary) Text() string {
	var b strings.Builder
	notRun := ""
	if len(s.NotRun) > 0 {
		notRun = fmt.Sprintf(", %d not run (the part's time ran out)", len(s.NotRun))
	}
	fmt.Fprintf(&b, "part %s (focus %s): %d passed, %d failed, %d skipped%s in %s\n",
		s.Part, s.Focus, s.Passed, s.Failed, s.Skipped, notRun, (time.Duration(s.Seconds) * time.Second).String())
	for _, f := range s.Failures {
		fmt.Fprintf(&b, "  %s: %s\n    %s\n", f.State, f.Name, f.Message)
	}
	for _, n := range s.NotRun {
		fmt.Fprintf(&b, "  not run: %s\n", n)
	}
	return b.String()
}

// Write puts summary.json and summary.txt in dir, each written to a
// temporary file first and renamed.
func Write(dir string, s Summary) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	for name, data := range map[string][]byte{"summary.json": append(js, '\n'), "summary.txt": []byte(s.Text())} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, data, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// Collect reads the summary.json of every part run under dir (each part's
// last run; a part is in its own subdirectory) and renders them as one
// Markdown table, oldest run first, with a totals row: the suite run in
// parts over several sessions adds up here. Parts that overlap (the whole
// "parallel" part and a SIG's) are listed as they are; the totals count
// each part once, so they are a sum of the rows, not of distinct specs.
// Re-runs of failed specs (RerunPart) are rows of their own, counted
// apart from the totals.
func Collect(dir string) (string, []Summary, error) {
	files, err := filepath.Glob(filepath.Join(dir, "*", "summary.json"))
	if err != nil {
		return "", nil, err
	}
	var parts []Summary
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return "", nil, err
		}
		var s Summary
		if err := json.Unmarshal(data, &s); err != nil {
			return "", nil, fmt.Errorf("%s: %w", f, err)
		}
		if s.Part == "" {
			s.Part = filepath.Base(filepath.Dir(f))
		}
		parts = append(parts, s)
	}
	slices.SortStableFunc(parts, func(a, b Summary) int { return a.Started.Compare(b.Started) })
	var b strings.Builder
	b.WriteString("| part | run (UTC) | passed | failed | skipped | not run | time | failed specs |\n| --- | --- | --- | --- | --- | --- | --- | --- |\n")
	var total, rerun Summary
	n := 0
	for _, s := range parts {
		var names []string
		for _, f := range s.Failures {
			names = append(names, shortName(f.Name))
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %d | %d | %d | %s | %s |\n", s.Part, s.Started.UTC().Format("2006-01-02 15:04"),
			s.Passed, s.Failed, s.Skipped, len(s.NotRun), (time.Duration(s.Seconds) * time.Second).String(), strings.Join(names, "; "))
		if strings.HasSuffix(s.Part, RerunSuffix) {
			// Re-runs of failed specs: beside the counts, not in them.
			rerun.Passed, rerun.Failed = rerun.Passed+s.Passed, rerun.Failed+s.Failed
			continue
		}
		n++
		total.Passed, total.Failed, total.Skipped = total.Passed+s.Passed, total.Failed+s.Failed, total.Skipped+s.Skipped
		total.NotRun = append(total.NotRun, s.NotRun...)
		total.Seconds += s.Seconds
	}
	fmt.Fprintf(&b, "| **%d parts** | | **%d** | **%d** | %d | %d | %s | |\n", n, total.Passed, total.Failed, total.Skipped,
		len(total.NotRun), (time.Duration(total.Seconds) * time.Second).String())
	if rerun.Passed+rerun.Failed > 0 {
		fmt.Fprintf(&b, "\nFailed specs re-run alone (the `%s` rows, not in the totals): %d passed, %d failed.\n", RerunSuffix, rerun.Passed, rerun.Failed)
	}
	return b.String(), parts, nil
}

// shortName is a spec's name for a table cell: without its labels.
func shortName(name string) string {
	return strings.ReplaceAll(specText(name), "|", "/")
}

// WriteParts puts Collect's table for dir into dir/parts.md (through a
// temporary file).
func WriteParts(dir string) (string, error) {
	table, _, err := Collect(dir)
	if err != nil {
		return "", err
	}
	tmp := filepath.Join(dir, ".parts.md.tmp")
	if err := os.WriteFile(tmp, []byte(table), 0o644); err != nil {
		return "", err
	}
	return table, os.Rename(tmp, filepath.Join(dir, "parts.md"))
}
