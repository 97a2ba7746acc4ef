package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Detached is a process kubeup started in its own session and finds again
// by its PID file (the vde switch, the host's API endpoint): it is that
// process only while /proc/PID/cmdline holds every marker, so a recycled
// PID is never taken for it.
type Detached struct {
	Name    string // for errors: "vde_switch", "the API endpoint"
	PIDFile string
	Markers []string
}

// Running is the process's PID, if it runs.
func (d Detached) Running() (int, bool) {
	data, err := os.ReadFile(d.PIDFile)
	if err != nil {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, false
	}
	for _, m := range d.Markers {
		if !bytes.Contains(cmdline, []byte(m)) {
			return 0, false
		}
	}
	return pid, true
}

// Stop sends SIGTERM, then SIGKILL after 5 s, and removes the PID file.
func (d Detached) Stop() error {
	if pid, ok := d.Running(); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
		if !WaitExit(pid, 5*time.Second) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if !WaitExit(pid, 5*time.Second) {
				return fmt.Errorf("%s (pid %d) did not exit", d.Name, pid)
			}
		}
	}
	_ = os.Remove(d.PIDFile)
	return nil
}

// WaitExit waits up to d for pid to exit; a zombie (not yet reaped by its
// parent) counts as gone.
func WaitExit(pid int, d time.Duration) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
			// pid (comm) STATE ...: comm may hold spaces, so after the last ')'.
			if i := bytes.LastIndexByte(st, ')'); i >= 0 {
				if f := strings.Fields(string(st[i+1:])); len(f) > 0 && f[0] == "Z" {
					return true
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}
