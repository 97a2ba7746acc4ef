package conformance

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Part is one run of the suite: the specs Focus selects less those Skip
// does, on Procs parallel ginkgo processes. Upstream runs the [Serial]
// specs on their own, one at a time, after the parallel ones.
type Part struct {
	Name  string
	Focus string
	Skip  string
	Procs int
	// Timeout bounds the whole part (ginkgo's --timeout).
	Timeout time.Duration
}

// Parts is the whole conformance suite in the order upstream runs it: the
// specs that may share the cluster in parallel, then the [Serial] ones.
func Parts(procs int, timeout time.Duration) []Part {
	return []Part{
		{Name: "parallel", Focus: `\[Conformance\]`, Skip: `\[Serial\]`, Procs: procs, Timeout: timeout},
		{Name: "serial", Focus: serialConformance, Procs: 1, Timeout: timeout},
	}
}

// serialConformance matches a [Serial] [Conformance] spec's name in either
// order of the two tags: v1.37's names end "[Conformance] [Serial]"
// ("[sig-scheduling] SchedulerPredicates validates that NodeSelector is
// respected if matching [Conformance] [Serial]"); the focus written for
// "[Serial] ... [Conformance]" matched none of them, and the serial parts
// ran no spec (found 2026-12-08 on sig-scheduling:serial: 0 specs, 0 s).
const serialConformance = `\[Serial\].*\[Conformance\]|\[Conformance\].*\[Serial\]`

// PartsFor parses a list of parts ("sig-apps,sig-network:serial,..."):
// each SIG's [Conformance] specs, parallel ones unless ":serial".
func PartsFor(list string, procs int, timeout time.Duration) ([]Part, error) {
	if strings.TrimSpace(list) == "" {
		return Parts(procs, timeout), nil
	}
	valid := regexp.MustCompile(`^sig-[a-z-]+$`)
	var out []Part
	for _, item := range strings.Split(list, ",") {
		sig, serial := strings.CutSuffix(strings.TrimSpace(item), ":serial")
		if !valid.MatchString(sig) {
			return nil, fmt.Errorf("conformance part %q: want sig-NAME or sig-NAME:serial (e.g. sig-apps, sig-network:serial)", item)
		}
		p := Part{Name: sig, Focus: `\[` + sig + `\].*\[Conformance\]`, Skip: `\[Serial\]`, Procs: procs, Timeout: timeout}
		if serial {
			p = Part{Name: sig + "-serial", Focus: `\[` + sig + `\].*(` + serialConformance + `)`, Procs: 1, Timeout: timeout}
		}
		out = append(out, p)
	}
	return out, nil
}

// Args is the ginkgo command line that runs e2eTest for the part against
// kubeconfig, writing its JUnit report and the framework's artefacts to
// reportDir. The framework's own flags follow "--": a provider with no
// cloud (skeleton), the masters' taint not blocking (they are not meant to
// run workloads), and no log dump through SSH the suite cannot do here.
func (p Part) Args(e2eTest, kubeconfig, reportDir string) []string {
	args := []string{
		"--procs=" + strconv.Itoa(max(p.Procs, 1)),
		"--timeout=" + p.Timeout.String(),
		"--output-dir=" + reportDir,
		"--junit-report=junit.xml",
		"--no-color",
		"--focus=" + p.Focus,
	}
	if p.Skip != "" {
		args = append(args, "--skip="+p.Skip)
	}
	return append(args, e2eTest, "--",
		"--kubeconfig="+kubeconfig,
		"--provider=skeleton",
		"--report-dir="+reportDir,
		"--non-blocking-taints=node-role.kubernetes.io/control-plane",
		"--disable-log-dump",
	)
}

// NotRun are the specs of s, the part's report, that the part selects but
// that never ran (its time ran out, or it was aborted): ginkgo reports them
// as it does the specs its focus left out, skipped without a reason, so
// the part's focus and skip tell them apart.
func (p Part) NotRun(s Summary) ([]string, error) {
	focus, err := regexp.Compile(p.Focus)
	if err != nil {
		return nil, fmt.Errorf("part %s: focus: %w", p.Name, err)
	}
	var skip *regexp.Regexp
	if p.Skip != "" {
		if skip, err = regexp.Compile(p.Skip); err != nil {
			return nil, fmt.Errorf("part %s: skip: %w", p.Name, err)
		}
	}
	var out []string
	for _, name := range s.unselected {
		if t := specText(name); focus.MatchString(t) && (skip == nil || !skip.MatchString(t)) {
			out = append(out, t)
		}
	}
	return out, nil
}

// RerunSuffix names the part that re-runs a part's failed specs.
const RerunSuffix = "-rerun"

// RerunPart is the part that runs p's failed specs again, one at a time
// and alone, so that a failure the load of parallel specs on this machine
// caused (a spec's fixed 10-second wait under TCG) is told from one that
// fails whatever the load. The focus is each failed spec's full text,
// quoted: exactly those specs. The re-run does not change p's counts; it
// is reported beside them. false when nothing failed.
func RerunPart(p Part, failures []Failure) (Part, bool) {
	var texts []string
	for _, f := range failures {
		// Suite nodes ([SynchronizedBeforeSuite], ...) are not specs.
		if t := specText(f.Name); strings.HasPrefix(t, "[sig-") {
			texts = append(texts, regexp.QuoteMeta(t))
		}
	}
	if len(texts) == 0 {
		return Part{}, false
	}
	return Part{Name: p.Name + RerunSuffix, Focus: strings.Join(texts, "|"), Procs: 1, Timeout: p.Timeout}, true
}

// specText is a JUnit spec name less the labels ginkgo's report appends
// in brackets ("... [Conformance] [sig-auth, Conformance]"; every
// conformance spec has at least the Conformance label): the text ginkgo's
// --focus matches, or a prefix of it.
func specText(name string) string {
	if i := strings.LastIndex(name, " ["); i > 0 && strings.HasSuffix(name, "]") {
		return name[:i]
	}
	return name
}
