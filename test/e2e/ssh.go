package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// SSH runs commands in a guest through a port forward, with OpenSSH.
type SSH struct {
	Port int
	Key  string // private key file
	User string
}

// NewKey writes a fresh ed25519 key pair into dir and returns the private
// key path and the public key line.
func NewKey(dir string) (string, string, error) {
	key := filepath.Join(dir, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubeup-e2e", "-f", key).CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("ssh-keygen: %w\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		return "", "", err
	}
	return key, strings.TrimSpace(string(pub)), nil
}

// A login to a loaded machine under TCG is slow: sshd's key exchange, then
// PAM registering the session with logind, which starts the user's systemd
// instance on the first login. Measured on a master during its first boot
// or under the e2e checks: over 30 s; five-second and thirty-second caps
// made every try fail for fifteen minutes although sshd was answering.
const (
	sshConnectTimeout = "ConnectTimeout=60"
	sshTryLimit       = 3 * time.Minute
)

// Run runs a shell command in the guest and returns its stdout.
func (s SSH) Run(ctx context.Context, command string) (string, error) {
	args := []string{"-q", "-i", s.Key, "-p", strconv.Itoa(s.Port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", sshConnectTimeout, "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
		// One connection per guest, shared by every command: a new login
		// costs a key exchange and a logind session, minutes on a loaded
		// master. The master process exits with the guest's connection or
		// a minute after the last command.
		"-o", "ControlMaster=auto", "-o", "ControlPath=" + filepath.Join(os.TempDir(), "kubeup-ssh-%C"), "-o", "ControlPersist=60",
		s.User + "@127.0.0.1", command}
	cmd := exec.CommandContext(ctx, "ssh", args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// Should the connection's master outlive this command holding its
	// output, the output is complete when ssh exits.
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if errors.Is(err, exec.ErrWaitDelay) {
		err = nil
	}
	if err != nil {
		return out.String(), fmt.Errorf("ssh %q: %w: %s%s", command, err, out.String(), errb.String())
	}
	return out.String(), nil
}

// Wait runs command until it succeeds or ctx ends; it returns the last
// output and error.
func (s SSH) Wait(ctx context.Context, command string, every time.Duration) (string, error) {
	for {
		c, cancel := context.WithTimeout(ctx, sshTryLimit)
		out, err := s.Run(c, command)
		cancel()
		if err == nil {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return out, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(every):
		}
	}
}

// Enabled reports whether end-to-end tests were asked for (make e2e sets
// KUBEUP_E2E=1); they boot VMs and take minutes.
func Enabled() bool { return os.Getenv("KUBEUP_E2E") == "1" }
