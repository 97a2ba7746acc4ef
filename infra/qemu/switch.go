package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"
)

// Switch is the cluster's L2 segment: a vde_switch (Debian's vde2) on a
// unix socket directory. VMs attach with -netdev vde; frames between them
// never reach the host's IP stack.
type Switch struct {
	Dir string
}

// Socket is the directory QEMU's -netdev vde,sock= takes.
func (s *Switch) Socket() string  { return filepath.Join(s.Dir, "sock") }
func (s *Switch) PIDFile() string { return filepath.Join(s.Dir, "vde_switch.pid") }
func (s *Switch) mgmt() string    { return filepath.Join(s.Dir, "mgmt") }

// Start starts the switch detached, unless it already runs.
func (s *Switch) Start(ctx context.Context) (int, error) {
	if pid, ok := s.Running(); ok {
		return pid, nil
	}
	if _, err := exec.LookPath("vde_switch"); err != nil {
		return 0, errors.New("vde_switch not found: install the Debian package vde2 (make deps does)")
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return 0, err
	}
	_ = os.RemoveAll(s.Socket())
	_ = os.Remove(s.mgmt())
	_ = os.Remove(s.PIDFile())
	cmd := exec.CommandContext(ctx, "vde_switch", "--sock", s.Socket(), "--daemon", "--pidfile", s.PIDFile(), "--mgmt", s.mgmt())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if out, err := cmd.CombinedOutput(); err != nil {
		return 0, fmt.Errorf("start vde_switch: %w\n%s", err, out)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if pid, ok := s.Running(); ok {
			if _, err := os.Stat(filepath.Join(s.Socket(), "ctl")); err == nil {
				return pid, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return 0, fmt.Errorf("vde_switch did not come up in %s", s.Dir)
}

func (s *Switch) proc() Detached {
	return Detached{Name: "vde_switch", PIDFile: s.PIDFile(), Markers: []string{"vde_switch", s.Socket()}}
}

// Running reports whether the switch of this directory runs.
func (s *Switch) Running() (int, bool) { return s.proc().Running() }

// Stop stops the switch by PID and removes its sockets.
func (s *Switch) Stop() error {
	if err := s.proc().Stop(); err != nil {
		return err
	}
	_ = os.RemoveAll(s.Socket())
	_ = os.Remove(s.mgmt())
	return nil
}
