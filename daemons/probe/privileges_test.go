package probe

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// In a child process (capabilities cannot be given back): after
// DropPrivileges every thread has no capability in any set and
// no_new_privs, and a root-owned 0600 file is still readable by root.
func TestDropPrivileges(t *testing.T) {
	if os.Getenv("KUBEUP_PROBE_DROP_CHILD") == "1" {
		if err := DropPrivileges(); errors.Is(err, syscall.ENOTSUP) {
			os.Exit(5) // a test binary with cgo: AllThreadsSyscall is not available
		} else if err != nil {
			os.Stderr.WriteString("DropPrivileges: " + err.Error() + "\n")
			os.Exit(3)
		}
		if _, err := os.ReadFile(os.Getenv("KUBEUP_PROBE_SECRET")); err != nil {
			os.Stderr.WriteString("read: " + err.Error() + "\n")
			os.Exit(4)
		}
		threads, _ := filepath.Glob("/proc/self/task/*/status")
		for _, th := range threads {
			data, _ := os.ReadFile(th)
			os.Stdout.Write(data)
		}
		os.Exit(0)
	}
	secret := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(secret, []byte("k"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDropPrivileges$")
	cmd.Env = append(os.Environ(), "KUBEUP_PROBE_DROP_CHILD=1", "KUBEUP_PROBE_SECRET="+secret)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if errors.As(err, &exit) && exit.ExitCode() == 5 {
		t.Skip("this test binary links cgo, where syscall.AllThreadsSyscall is not supported (kubeup-probe is built with CGO_ENABLED=0)")
	}
	if exit != nil {
		t.Fatalf("child: %v: %s", err, exit.Stderr)
	}
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	threads := 0
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Name":
			threads++
		case "CapInh", "CapPrm", "CapEff", "CapAmb":
			if strings.Trim(v, "0") != "" {
				t.Errorf("thread %d: %s %s, want none", threads, k, v)
			}
		case "CapBnd":
			if os.Geteuid() == 0 && strings.Trim(v, "0") != "" {
				t.Errorf("thread %d: bounding set %s, want empty", threads, v)
			}
		case "NoNewPrivs":
			if v != "1" {
				t.Errorf("thread %d: NoNewPrivs %s", threads, v)
			}
		}
	}
	if threads < 2 {
		t.Errorf("%d threads seen; the Go runtime runs several", threads)
	}
}
