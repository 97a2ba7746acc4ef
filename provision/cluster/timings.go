package cluster

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kubeup.dev/kubeup/infra"
	"kubeup.dev/kubeup/infra/qemu"
)

// Timings are the phases of an `up` (seconds since it started), written to
// a JSON file.
type Timings struct {
	Cluster  string    `json:"cluster"`
	Machines int       `json:"machines"`
	Accel    string    `json:"accel"`
	Started  time.Time `json:"started"`
	Phases   []Phase   `json:"phases"`
	// PeakQEMUMiB is the sum of the VMs' peak resident memory on the host.
	PeakQEMUMiB int64 `json:"peakQEMUMiB,omitempty"`
	// PeakKubeupMiB is this process's peak resident memory.
	PeakKubeupMiB int64 `json:"peakKubeupMiB,omitempty"`

	out io.Writer
}

// Phase is one finished phase.
type Phase struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

func newTimings(cluster string, machines int, out io.Writer) *Timings {
	return &Timings{Cluster: cluster, Machines: machines, Started: time.Now(), out: out}
}

// phase records a finished phase and prints it with the elapsed time.
func (t *Timings) phase(name string) {
	d := time.Since(t.Started)
	t.Phases = append(t.Phases, Phase{Name: name, Seconds: d.Seconds()})
	fmt.Fprintf(t.out, "[%6s] %s\n", d.Round(time.Second), name)
}

// ProgressPhases reads back the phase lines phase printed ("[  3m2s] API
// server healthy") from an up's output, as "API server healthy 3m2s", in
// order; other lines (a console's "[  5.1] kernel") are skipped.
func ProgressPhases(out string) []string {
	var phases []string
	for _, l := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(l), "[")
		if !ok {
			continue
		}
		at, name, ok := strings.Cut(rest, "] ")
		if _, err := time.ParseDuration(strings.TrimSpace(at)); !ok || err != nil {
			continue
		}
		phases = append(phases, strings.TrimSpace(name)+" "+strings.TrimSpace(at))
	}
	return phases
}

// Add records a phase that happened after Up returned (verify).
func (t *Timings) Add(name string) { t.phase(name) }

func (t *Timings) peakMemory(lc infra.LocalCluster) {
	var total int64
	for _, m := range lc.Machines {
		vm := &qemu.VM{Dir: lc.MachineDir(m.Name)}
		if pid, ok := vm.Running(); ok {
			total += vmHWM(fmt.Sprintf("/proc/%d/status", pid))
		}
	}
	t.PeakQEMUMiB = total >> 10
	t.PeakKubeupMiB = vmHWM("/proc/self/status") >> 10
}

// vmHWM reads a process's peak resident set in KiB.
func vmHWM(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}

// write saves the timings to file, or to the cluster directory.
func (t *Timings) write(file, dir string) error {
	if file == "" {
		file = filepath.Join(dir, "timings.json")
	}
	return writeFile(file, mustJSON(t), 0o644)
}

// Write saves the timings again (after verify added phases).
func (t *Timings) Write(file, dataDir string) error { return t.write(file, Dir(dataDir, t.Cluster)) }
