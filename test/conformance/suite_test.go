package conformance

import (
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParts(t *testing.T) {
	parts := Parts(3, time.Hour)
	if len(parts) != 2 || parts[0].Procs != 3 || parts[1].Procs != 1 {
		t.Fatalf("parts %+v", parts)
	}
	serial := "[sig-apps] Daemon set [Serial] should rollback without unnecessary restarts [Conformance]"
	parallel := "[sig-apps] Deployment deployment should support rollover [Conformance]"
	other := "[sig-apps] Deployment should not be conformance"
	matches := func(p Part, name string) bool {
		in := regexp.MustCompile(p.Focus).MatchString(name)
		return in && (p.Skip == "" || !regexp.MustCompile(p.Skip).MatchString(name))
	}
	// v1.37.2's own names (e2e.test --list-conformance-tests) put [Serial] last.
	serialLast := "[sig-scheduling] SchedulerPredicates validates that NodeSelector is respected if matching [Conformance] [Serial]"
	for _, name := range []string{serial, serialLast, parallel} {
		n := 0
		for _, p := range parts {
			if matches(p, name) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("%q is in %d parts, want exactly one", name, n)
		}
	}
	for _, p := range parts {
		if matches(p, other) {
			t.Errorf("%q runs in part %s", other, p.Name)
		}
	}

	if !matches(parts[1], serialLast) {
		t.Errorf("%q is not in the serial part", serialLast)
	}
	sched, err := PartsFor("sig-scheduling:serial", 2, time.Hour)
	if err != nil || len(sched) != 1 || !matches(sched[0], serialLast) || matches(sched[0], serial) ||
		matches(sched[0], "[sig-scheduling] LimitRange should list, patch and delete a LimitRange by collection [Conformance]") {
		t.Errorf("sig-scheduling:serial: %+v %v", sched, err)
	}

	got, err := PartsFor("sig-apps, sig-apps:serial", 2, time.Hour)
	if err != nil || len(got) != 2 || !matches(got[0], parallel) || matches(got[0], serial) || !matches(got[1], serial) || got[1].Procs != 1 ||
		matches(got[0], "[sig-network] DNS should provide DNS for the cluster [Conformance]") {
		t.Errorf("PartsFor: %+v %v", got, err)
	}
	if _, err := PartsFor("apps", 2, time.Hour); err == nil || !strings.Contains(err.Error(), `"apps"`) {
		t.Errorf("a bad part: %v", err)
	}
}

func TestArgs(t *testing.T) {
	p := Part{Name: "parallel", Focus: `\[Conformance\]`, Skip: `\[Serial\]`, Procs: 2, Timeout: 90 * time.Minute}
	args := p.Args("/x/e2e.test", "/k/kubeconfig", "/out/parallel")
	i := slices.Index(args, "/x/e2e.test")
	if i < 0 || args[i+1] != "--" {
		t.Fatalf("the suite binary and its separator: %q", args)
	}
	for _, want := range []string{"--procs=2", "--timeout=1h30m0s", "--output-dir=/out/parallel", "--junit-report=junit.xml", `--focus=\[Conformance\]`, `--skip=\[Serial\]`} {
		if j := slices.Index(args, want); j < 0 || j > i {
			t.Errorf("ginkgo flag %s missing or after the binary: %q", want, args)
		}
	}
	for _, want := range []string{"--kubeconfig=/k/kubeconfig", "--provider=skeleton", "--report-dir=/out/parallel"} {
		if j := slices.Index(args, want); j < i {
			t.Errorf("suite flag %s missing or before the binary: %q", want, args)
		}
	}
	p.Skip = ""
	for _, a := range p.Args("e", "k", "r") {
		if strings.HasPrefix(a, "--skip") {
			t.Errorf("an empty skip passed: %q", a)
		}
	}
}

func TestRerunPart(t *testing.T) {
	p := Part{Name: "sig-auth", Focus: `\[sig-auth\].*\[Conformance\]`, Skip: `\[Serial\]`, Procs: 2, Timeout: time.Hour}
	if _, ok := RerunPart(p, nil); ok {
		t.Error("a re-run of nothing")
	}
	ctb := "[sig-auth] [FeatureGate:ClusterTrustBundle] should prevent a pod from starting if: sets optional=false and no trust bundle matches query [MinimumKubeletVersion:1.37] [Conformance]"
	other := "[sig-auth] ServiceAccounts should mount projected service account token [Conformance]"
	r, ok := RerunPart(p, []Failure{
		{Name: ctb + " [sig-auth, FeatureGate:ClusterTrustBundle, Conformance]"},
		{Name: "[SynchronizedBeforeSuite]"},
		{Name: other + " [Conformance]"},
	})
	if !ok || r.Name != "sig-auth-rerun" || r.Procs != 1 || r.Skip != "" || r.Timeout != time.Hour {
		t.Fatalf("re-run part %+v %v", r, ok)
	}
	re, err := regexp.Compile(r.Focus)
	if err != nil {
		t.Fatal(err)
	}
	// ginkgo matches the focus against a spec's full text.
	for _, text := range []string{ctb, other} {
		if !re.MatchString(text) {
			t.Errorf("focus %q does not match %q", r.Focus, text)
		}
	}
	for _, text := range []string{
		"[sig-auth] [FeatureGate:ClusterTrustBundle] should prevent a pod from starting if: sets optional=true and no trust bundle matches query [MinimumKubeletVersion:1.37] [Conformance]",
		"[sig-auth] ServiceAccounts should mount an API token into pods [Conformance]",
	} {
		if re.MatchString(text) {
			t.Errorf("focus %q matches a spec that passed: %q", r.Focus, text)
		}
	}
	if _, ok := RerunPart(p, []Failure{{Name: "[SynchronizedBeforeSuite]"}}); ok {
		t.Error("a re-run of a suite node")
	}
}
