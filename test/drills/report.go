// Package drills proves that a kubeup cluster heals itself: every
// component killed, every machine rebooted (gracefully and by a hard
// reset), etcd restored from a snapshot, certificates renewed. TestDrills
// (make drills) runs them on one cluster and writes a report: each drill,
// the time until the API answered and until everything was healthy again,
// what data it checked, and whether it passed.
package drills

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"
)

// Result is one drill's outcome.
type Result struct {
	Drill   string `json:"drill"`
	Machine string `json:"machine,omitempty"`
	// APIBack is from the action to the API server's /readyz answering
	// again (0 when the API never went away).
	APIBack Seconds `json:"apiBackSeconds"`
	// Healthy is from the action to every node, kube-system pod and
	// kubeup unit healthy again.
	Healthy Seconds `json:"healthySeconds"`
	// Restarts counts the unit's restarts over the drill (a kill should
	// cost one; more is a restart loop).
	Restarts int `json:"restarts,omitempty"`
	// Outage is how long the API did not answer during a drill that must
	// cost none (cert-renewal), and Renewals the certificate renewals it
	// saw.
	Outage   Seconds `json:"outageSeconds,omitempty"`
	Renewals int     `json:"renewals,omitempty"`
	// Start is where a restarted API server's time went (StartPhases).
	Start string `json:"start,omitempty"`
	// Data says what the drill checked was kept, and what it found.
	Data  string `json:"data"`
	Pass  bool   `json:"pass"`
	Error string `json:"error,omitempty"`
}

// Seconds is a duration reported in seconds.
type Seconds float64

func secondsOf(d time.Duration) Seconds { return Seconds(d.Round(100 * time.Millisecond).Seconds()) }

func (s Seconds) String() string {
	if s == 0 {
		return "-"
	}
	return time.Duration(float64(s) * float64(time.Second)).Round(time.Second).String()
}

// Report is a drills run.
type Report struct {
	Cluster  string    `json:"cluster"`
	Started  time.Time `json:"started"`
	Accel    string    `json:"accel"`
	Machines int       `json:"machines"`
	// FirstBoot is how long `up` took to every kube-system pod Ready: the
	// bound for a reboot drill.
	FirstBoot Seconds  `json:"firstBootSeconds"`
	Results   []Result `json:"results"`
}

// Passed says whether every drill passed.
func (r *Report) Passed() bool {
	for _, res := range r.Results {
		if !res.Pass {
			return false
		}
	}
	return len(r.Results) > 0
}

// WriteTable prints the report as a table.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "drills on cluster %s (%d machines, %s), first boot %s\n", r.Cluster, r.Machines, r.Accel, r.FirstBoot)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DRILL\tMACHINE\tAPI BACK\tHEALTHY\tRESTARTS\tDATA\tRESULT")
	for _, res := range r.Results {
		result := "pass"
		if !res.Pass {
			result = "FAIL: " + oneLine(res.Error)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", res.Drill, res.Machine, res.APIBack, res.Healthy, res.Restarts, res.Data, result)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, res := range r.Results {
		if res.Start != "" {
			fmt.Fprintf(w, "%s on %s, its start %s\n", res.Drill, res.Machine, res.Start)
		}
	}
	return nil
}

// Save writes report.json and report.txt into dir, each through a
// temporary file.
func (r *Report) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	var table strings.Builder
	if err := r.WriteTable(&table); err != nil {
		return err
	}
	for name, content := range map[string][]byte{"report.json": append(data, '\n'), "report.txt": []byte(table.String())} {
		tmp := filepath.Join(dir, "."+name+".tmp")
		if err := os.WriteFile(tmp, content, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 160 {
		s = s[:160] + "..."
	}
	return s
}
