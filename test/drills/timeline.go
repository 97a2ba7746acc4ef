package drills

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"kubeup.dev/kubeup/provision/cluster"
)

// startMilestones are the journal lines of a unit's start that tell where
// its time went (systemd's and the API server's own).
var startMilestones = regexp.MustCompile(`Main process exited|Scheduled restart|Starting |Started |Serving securely|Caches are synced for|poststarthook|created successfully|failed|Failed|timed out|error|msg=ready`)

// StartPhases split a restart, each an offset from the kill (0 when its
// line was not found): systemd's restart delay and ExecStartPre until
// "Starting", the program's own initialisation until its first log line,
// the API server's until it serves on its port, and its post-start hooks,
// readiness wait and ExecStartPost until systemd says "Started".
type StartPhases struct {
	Starting, FirstLog, Serving, Started time.Duration
}

func (p StartPhases) String() string {
	var parts []string
	for _, s := range []struct {
		what string
		at   time.Duration
	}{{"Starting", p.Starting}, {"first log line", p.FirstLog}, {"serving", p.Serving}, {"Started (ready, port open)", p.Started}} {
		if s.at != 0 {
			parts = append(parts, fmt.Sprintf("%s %.1fs", s.what, s.at.Seconds()))
		}
	}
	if len(parts) == 0 {
		return "no milestones found"
	}
	return "from the kill: " + strings.Join(parts, ", ")
}

// StartTimeline is a service's journal from since on, its milestones only,
// each with its offset from since, and the start's phases: where a restart
// spent its time. The service's own program logs under its unit's name.
func (c *Cluster) StartTimeline(ctx context.Context, m cluster.MachineState, service string, since time.Time) (string, StartPhases, error) {
	out, err := c.SSH(m).Run(ctx, fmt.Sprintf("sudo journalctl --no-pager -q -o json -u %s --since=@%d", service, since.Unix()))
	if err != nil {
		return "", StartPhases{}, err
	}
	tl, phases := timeline(out, strings.TrimSuffix(service, ".service"), since)
	return tl, phases, nil
}

// journalEntry is a line of `journalctl -o json`: when journald received
// it, when its sender says it sent it (native protocol only), who sent it
// and what.
type journalEntry struct {
	Received string          `json:"__REALTIME_TIMESTAMP"`
	Sent     string          `json:"_SOURCE_REALTIME_TIMESTAMP"`
	Ident    string          `json:"SYSLOG_IDENTIFIER"`
	PID      string          `json:"_PID"`
	Message  json.RawMessage `json:"MESSAGE"`
}

// klogHeader is the start of a klog line: severity, month, day, time
// (the machine's clock, UTC on kubeup's machines).
var klogHeader = regexp.MustCompile(`^[IWEF](\d\d)(\d\d) (\d\d):(\d\d):(\d\d)\.(\d{6}) `)

// when is the best time an entry has of when it was written. journald
// receives the lines of a busy machine's daemons seconds late (measured:
// up to 75 s after an API server's kill under TCG), so the time in a klog
// header, or the sender's own timestamp, comes before the receipt.
func (e journalEntry) when(msg string) (time.Time, bool) {
	us, err := strconv.ParseInt(e.Received, 10, 64)
	if err != nil {
		return time.Time{}, false
	}
	received := time.UnixMicro(us).UTC()
	if m := klogHeader.FindStringSubmatch(msg); m != nil {
		n := make([]int, 6)
		for i := range n {
			n[i], _ = strconv.Atoi(m[i+1])
		}
		year := received.Year()
		if time.Month(n[0]) > received.Month() { // a line from December received in January
			year--
		}
		return time.Date(year, time.Month(n[0]), n[1], n[2], n[3], n[4], n[5]*1000, time.UTC), true
	}
	if sent, err := strconv.ParseInt(e.Sent, 10, 64); err == nil {
		return time.UnixMicro(sent).UTC(), true
	}
	return received, true
}

// message is MESSAGE as text: journald gives it as an array of bytes when
// it is not valid UTF-8.
func (e journalEntry) message() string {
	var s string
	if json.Unmarshal(e.Message, &s) == nil {
		return s
	}
	var b []byte
	if json.Unmarshal(e.Message, &b) == nil {
		return string(b)
	}
	return ""
}

// timeline keeps the startMilestones lines of journalctl's JSON output, in
// the order they were written, each with its offset from since (at most
// 80, each cut at 200 characters), and finds the start's phases; program
// is the unit's own process (its syslog identifier).
func timeline(out, program string, since time.Time) (string, StartPhases) {
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	var p StartPhases
	offset := func(at time.Time) time.Duration {
		if d := at.Sub(since); d > 0 {
			return d
		}
		return time.Nanosecond // a milestone at the kill itself still counts as found
	}
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 4*1024*1024)
	for sc.Scan() {
		var e journalEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil {
			continue
		}
		msg := e.message()
		at, ok := e.when(msg)
		if !ok || at.Before(since.Add(-time.Second)) {
			continue
		}
		switch {
		case e.Ident == "systemd" && strings.HasPrefix(msg, "Starting ") && p.Starting == 0:
			p.Starting = offset(at)
		case e.Ident == program && p.FirstLog == 0 && p.Starting != 0:
			p.FirstLog = offset(at)
		}
		switch {
		case e.Ident == program && strings.Contains(msg, "Serving securely") && p.Serving == 0:
			p.Serving = offset(at)
		case e.Ident == "systemd" && strings.HasPrefix(msg, "Started ") && p.Started == 0:
			p.Started = offset(at)
		}
		if startMilestones.MatchString(msg) {
			lines = append(lines, line{at, fmt.Sprintf("%s[%s]: %s", e.Ident, e.PID, msg)})
		}
	}
	slices.SortStableFunc(lines, func(a, b line) int { return a.at.Compare(b.at) })
	var b strings.Builder
	for i, l := range lines {
		if i == 80 {
			b.WriteString("  …\n")
			break
		}
		text := l.text
		if len(text) > 200 {
			text = text[:200] + "…"
		}
		fmt.Fprintf(&b, "  %+7.1fs %s\n", l.at.Sub(since).Seconds(), text)
	}
	return b.String(), p
}
