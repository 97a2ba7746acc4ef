package drills

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// entry is a line of journalctl's JSON output; sent 0 leaves
// _SOURCE_REALTIME_TIMESTAMP out, as journald does for a unit's stdout.
func entry(t *testing.T, received, sent time.Time, ident string, pid int, msg any) string {
	t.Helper()
	e := map[string]any{"__REALTIME_TIMESTAMP": fmt.Sprint(received.UnixMicro()), "SYSLOG_IDENTIFIER": ident, "_PID": fmt.Sprint(pid), "MESSAGE": msg}
	if !sent.IsZero() {
		e["_SOURCE_REALTIME_TIMESTAMP"] = fmt.Sprint(sent.UnixMicro())
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A start's timeline and phases come from when each line was written (the
// klog header, systemd's own timestamp), not from when journald received
// it: on a busy machine the API server's lines arrived up to a minute late.
func TestTimeline(t *testing.T) {
	kill := time.Date(2026, 12, 7, 17, 52, 34, 0, time.UTC)
	at := func(s float64) time.Time { return kill.Add(time.Duration(s * float64(time.Second))) }
	klog := func(s float64, text string) string {
		return "I1207 " + at(s).Format("15:04:05.000000") + "    2648 " + text
	}
	var zero time.Time
	out := strings.Join([]string{
		entry(t, at(0.3), at(0.2), "systemd", 1, "kube-apiserver.service: Main process exited, code=killed, status=9/KILL"),
		// the killed process's last line, received after the kill: not part of the start
		entry(t, at(1), zero, "kube-apiserver", 2173, klog(-3, "handler.go:309] Adding GroupVersion v1")),
		entry(t, at(5.2), at(5.1), "systemd", 1, "Starting kube-apiserver.service - Kubernetes API server..."),
		entry(t, at(9.5), zero, "kubeup-probe", 2649, `level=INFO msg="not ready yet" after=0s`),
		entry(t, at(16), zero, "kube-apiserver", 2648, klog(10.7, `server.go:153] "Golang settings" GOGC=""`)),
		entry(t, at(50.4), zero, "kube-apiserver", 2648, klog(50.3, "secure_serving.go:216] Serving securely on [::]:6443")),
		"not json",
		// not valid UTF-8: journald gives the message as bytes
		entry(t, at(51), zero, "kube-apiserver", 2648, []int{'b', 'a', 'd', 0xff, ' ', 'e', 'r', 'r', 'o', 'r'}),
		entry(t, at(71.5), zero, "kubeup-probe", 2649, `level=INFO msg=ready probe=https://[::1]:6443/readyz after=1m2.2s`),
		entry(t, at(78), at(74.1), "systemd", 1, "Started kube-apiserver.service - Kubernetes API server."),
	}, "\n")

	tl, p := timeline(out, "kube-apiserver", kill)

	want := StartPhases{Starting: 5100 * time.Millisecond, FirstLog: 10700 * time.Millisecond, Serving: 50300 * time.Millisecond, Started: 74100 * time.Millisecond}
	if p != want {
		t.Errorf("phases %+v, want %+v", p, want)
	}
	if got, w := p.String(), "from the kill: Starting 5.1s, first log line 10.7s, serving 50.3s, Started (ready, port open) 74.1s"; got != w {
		t.Errorf("String() = %q, want %q", got, w)
	}
	wantTL := "     +0.2s systemd[1]: kube-apiserver.service: Main process exited, code=killed, status=9/KILL\n" +
		"     +5.1s systemd[1]: Starting kube-apiserver.service - Kubernetes API server...\n" +
		"    +50.3s kube-apiserver[2648]: I1207 17:53:24.300000    2648 secure_serving.go:216] Serving securely on [::]:6443\n" +
		"    +51.0s kube-apiserver[2648]: bad\xff error\n" +
		"    +71.5s kubeup-probe[2649]: level=INFO msg=ready probe=https://[::1]:6443/readyz after=1m2.2s\n" +
		"    +74.1s systemd[1]: Started kube-apiserver.service - Kubernetes API server.\n"
	if tl != wantTL {
		t.Errorf("timeline:\n%s\nwant\n%s", tl, wantTL)
	}
	if got := (StartPhases{}).String(); got != "no milestones found" {
		t.Errorf("empty phases: %q", got)
	}
}

// A klog line from December received in January is from the year before.
func TestJournalEntryWhenAcrossNewYear(t *testing.T) {
	received := time.Date(2027, 1, 1, 0, 0, 5, 0, time.UTC)
	e := journalEntry{Received: fmt.Sprint(received.UnixMicro())}
	got, ok := e.when("E1231 23:59:58.500000    12 x.go:1] late")
	if want := time.Date(2026, 12, 31, 23, 59, 58, 500000000, time.UTC); !ok || !got.Equal(want) {
		t.Errorf("when = %v, %v; want %v", got, ok, want)
	}
}
