package e2e

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"kubeup.dev/kubeup/provision/cluster"
)

// Steps is a long test's account of itself, for the last lines of its
// output (all a CI log may keep): each step's wall time and the host CPU
// each machine's QEMU used in it, and the host's own speed at the start
// and at the end. A run that is slow on a slow host then tells so apart
// from a run that is slow because a machine is starved or spinning.
type Steps struct {
	mu      sync.Mutex
	last    time.Time
	pids    []machinePID
	lastCPU map[string]float64
	steps   []string
	phases  []string
	speed   []time.Duration
	host0   hostStat
}

type machinePID struct {
	name string
	pid  int
}

// NewSteps starts the account and measures the host's speed.
func NewSteps() *Steps {
	s := &Steps{last: time.Now(), lastCPU: map[string]float64{}, host0: readHostStat()}
	s.speed = append(s.speed, HostSpeed())
	return s
}

// Machines names the cluster's QEMU processes to account for.
func (s *Steps) Machines(dataDir string, st *cluster.State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pids = nil
	for _, m := range st.Machines {
		if pid, ok := cluster.LocalVM(dataDir, st.Name, m.Name).Running(); ok {
			s.pids = append(s.pids, machinePID{m.Name, pid})
		}
	}
}

// UpPhases keeps the phases `kubeup up` printed ("[  3m2s] API server
// ready"), so that the account says which phase a failed or slow up spent
// its time in.
func (s *Steps) UpPhases(out string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phases = cluster.ProgressPhases(out)
}

// Done ends a step that began when the previous one ended.
func (s *Steps) Done(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	var cpu []string
	for _, m := range s.pids {
		c, err := processCPU(m.pid)
		if err != nil {
			continue
		}
		cpu = append(cpu, strconv.Itoa(int(c-s.lastCPU[m.name])))
		s.lastCPU[m.name] = c
	}
	step := name + " " + now.Sub(s.last).Round(time.Second).String()
	if len(cpu) > 0 {
		step += " (" + strings.Join(cpu, "/") + ")"
	}
	s.steps = append(s.steps, step)
	s.last = now
}

// Summary is the account in three lines; it measures the host's speed
// again.
func (s *Steps) Summary() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.speed = append(s.speed, HostSpeed())
	var names []string
	for _, m := range s.pids {
		names = append(names, m.name)
	}
	h := readHostStat()
	busy, steal := h.since(s.host0)
	var speeds []string
	for _, d := range s.speed {
		speeds = append(speeds, d.Round(time.Millisecond).String())
	}
	up := "none printed"
	if len(s.phases) > 0 {
		up = strings.Join(s.phases, ", ")
	}
	return fmt.Sprintf("up's phases (since it started): %s\nsteps (wall time; host CPU seconds of QEMU %s): %s\n"+
		"host: SHA-256 of 64 MiB took %s (start, end; 47 ms on the development machine idle); CPU busy %.0f%%, stolen %.1f%% over the run",
		up, strings.Join(names, "/"), strings.Join(s.steps, ", "), strings.Join(speeds, ", "), busy, steal)
}

// HostSpeed times a fixed piece of CPU work on the host: SHA-256 of
// 64 MiB.
func HostSpeed() time.Duration {
	buf := bytes.Repeat([]byte{0x5a}, 1<<20)
	start := time.Now()
	h := sha256.New()
	for range 64 {
		h.Write(buf)
	}
	_ = h.Sum(nil)
	return time.Since(start)
}

// processCPU is a process's user and system CPU seconds (all threads).
func processCPU(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	// Fields 14 and 15 (utime, stime) in clock ticks of 1/100 s (USER_HZ
	// on Linux x86).
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q %q", pid, f[11], f[12])
	}
	return (utime + stime) / 100, nil
}

// hostStat is /proc/stat's first line: the host's CPU time by kind.
type hostStat struct{ total, idle, steal float64 }

func readHostStat() hostStat {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return hostStat{}
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	var h hostStat
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i >= 8 { // guest time is counted in user already
			break
		}
		h.total += n
		switch i {
		case 3, 4: // idle, iowait
			h.idle += n
		case 7:
			h.steal += n
		}
	}
	return h
}

// since is the share of CPU time busy and stolen between o and h.
func (h hostStat) since(o hostStat) (busy, steal float64) {
	d := h.total - o.total
	if d <= 0 {
		return 0, 0
	}
	return 100 * (d - (h.idle - o.idle)) / d, 100 * (h.steal - o.steal) / d
}
