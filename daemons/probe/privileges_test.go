package probe

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
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

// In a child process of its own network namespace (root only): kept
// capabilities stay usable after DropPrivileges, and only they. The
// readiness wait keeps CAP_NET_ADMIN to open the API server's gate: with
// it, the gate closed before the drop opens after it; without it, the
// kernel refuses (EPERM), so the keep is what makes the open work.
func TestDropPrivilegesKeeps(t *testing.T) {
	if mode := os.Getenv("KUBEUP_PROBE_KEEP_CHILD"); mode != "" {
		os.Exit(keepChild(mode == "net-admin"))
	}
	if testing.Short() {
		t.Skip("-short: needs a network namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and nftables")
	}
	for _, tc := range []struct {
		mode, want string
	}{
		{"net-admin", "CapEff 0000000000001000, gate opened"},
		{"none", "CapEff 0000000000000000, open refused: operation not permitted"},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDropPrivilegesKeeps$")
		cmd.Env = append(os.Environ(), "KUBEUP_PROBE_KEEP_CHILD="+tc.mode)
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if errors.As(err, &exit) && exit.ExitCode() == 5 {
			t.Skip("this test binary links cgo, where syscall.AllThreadsSyscall is not supported")
		}
		if err != nil {
			t.Fatalf("%s: child: %v: %s", tc.mode, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != tc.want {
			t.Errorf("%s: %q, want %q", tc.mode, got, tc.want)
		}
	}
}

// keepChild closes a gate, drops privileges (keeping CAP_NET_ADMIN or
// nothing), prints every thread's effective set if they agree, and what
// opening the gate did.
func keepChild(keepNetAdmin bool) int {
	g := Gate{Name: "keep-test", Port: 6443}
	c, err := nftables.New()
	if err == nil {
		err = g.Close(c)
	}
	if err != nil {
		os.Stderr.WriteString("close: " + err.Error() + "\n")
		return 3
	}
	var keep []int
	if keepNetAdmin {
		keep = append(keep, unix.CAP_NET_ADMIN)
	}
	if err := DropPrivileges(keep...); errors.Is(err, syscall.ENOTSUP) {
		return 5
	} else if err != nil {
		os.Stderr.WriteString("DropPrivileges: " + err.Error() + "\n")
		return 3
	}
	effective := map[string]bool{}
	threads, _ := filepath.Glob("/proc/self/task/*/status")
	for _, th := range threads {
		data, _ := os.ReadFile(th)
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
				effective[strings.TrimSpace(v)] = true
			}
		}
	}
	if len(effective) != 1 {
		fmt.Printf("threads differ: %v\n", effective)
		return 0
	}
	result := "gate opened"
	if err := g.Open(c); err != nil {
		result = "open refused: " + errors.Unwrap(errors.Unwrap(err)).Error()
	}
	for v := range effective {
		fmt.Printf("CapEff %s, %s\n", v, result)
	}
	return 0
}
