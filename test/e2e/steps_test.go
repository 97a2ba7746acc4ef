package e2e

import (
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSteps(t *testing.T) {
	s := NewSteps()
	s.pids = []machinePID{{"self", os.Getpid()}}
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		HostSpeed() // some CPU time of this process
	}
	s.Done("work")
	s.Done("nothing")
	s.UpPhases("building\n[    2s] images ready\n[  1m0s] API server ready\n[x] not a phase\nmachine master-0: [  5.1] kernel\n")
	got := s.Summary()
	lines := strings.Split(got, "\n")
	if len(lines) != 3 || lines[0] != "up's phases (since it started): images ready 2s, API server ready 1m0s" {
		t.Fatalf("summary:\n%s", got)
	}
	lines = lines[1:]
	// "work" is one SHA-256 of 64 MiB at least: 47 ms idle, over 500 ms
	// beside a make e2e (its wall time rounds to 1s then).
	if !strings.HasPrefix(lines[0], "steps (wall time; host CPU seconds of QEMU self): work ") ||
		!regexp.MustCompile(`^work [01]s \([0-9]+\),`).MatchString(strings.TrimPrefix(lines[0], "steps (wall time; host CPU seconds of QEMU self): ")) ||
		!strings.Contains(lines[0], ", nothing 0s (0)") || !strings.Contains(lines[1], "SHA-256 of 64 MiB took ") {
		t.Errorf("summary:\n%s", got)
	}
	if c, err := processCPU(os.Getpid()); err != nil || c <= 0 {
		t.Errorf("this process's CPU: %v %v", c, err)
	}
	if busy, steal := readHostStat().since(hostStat{}); busy <= 0 || busy > 100 || steal < 0 {
		t.Errorf("host since boot: busy %.1f%%, stolen %.1f%%", busy, steal)
	}
}
