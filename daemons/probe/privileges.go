package probe

import (
	"errors"
	"fmt"
	"slices"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DropPrivileges leaves the probe no privilege to use or gain, whatever the
// unit it runs in allows. The probe has no unit of its own: it is the
// ExecStartPost (or ExecStartPre) of other units, so systemd sandboxing
// would be theirs (the kubelet's and containerd's have every capability,
// and kube-proxy's too); yet all it does is read files root owns
// (certificates, kubeconfigs, the agent's configuration), connect to
// endpoints and exit. So it sandboxes itself at start: no_new_privs (no
// execve can raise what it has), and empty capability bounding, permitted,
// effective and inheritable sets. Capabilities are per thread, and the Go
// runtime has started several: every change is made on all of them
// (syscall.AllThreadsSyscall, which a binary built without cgo has).
//
// keep names capabilities (unix.CAP_*) to leave in the bounding,
// permitted and effective sets: the API server's readiness wait also opens
// its port gate (CAP_NET_ADMIN, checked by the kernel at each netlink
// request) and lowers CPU weights over D-Bus (systemd checks the caller's
// CAP_SYS_ADMIN when the call arrives), both after the wait, so it keeps
// those two and nothing else.
func DropPrivileges(keep ...int) error {
	for _, k := range keep {
		if k < 0 || k >= 64 {
			return fmt.Errorf("capability %d: out of range", k)
		}
	}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_SET_NO_NEW_PRIVS, 1, 0); e != 0 {
		return fmt.Errorf("set no_new_privs: %w", e)
	}
	// The bounding set, as far as the kernel knows capabilities (EINVAL
	// past its last one). Without CAP_SETPCAP (an unprivileged caller)
	// there is nothing to drop from it that emptying the others would
	// not already make unusable.
	for c := uintptr(0); c < 64; c++ {
		if slices.Contains(keep, int(c)) {
			continue
		}
		_, _, e := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, unix.PR_CAPBSET_DROP, c, 0)
		if errors.Is(e, syscall.EINVAL) || errors.Is(e, syscall.EPERM) {
			break
		}
		if e != 0 {
			return fmt.Errorf("drop capability %d from the bounding set: %w", c, e)
		}
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData // zero but for keep: nothing inheritable
	for _, k := range keep {
		data[k/32].Permitted |= 1 << (k % 32)
		data[k/32].Effective |= 1 << (k % 32)
	}
	if _, _, e := syscall.AllThreadsSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); e != 0 {
		return fmt.Errorf("set capabilities: %w", e)
	}
	return nil
}
