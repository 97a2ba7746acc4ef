package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Firmware a VM boots with.
type Firmware string

// Firmwares.
const (
	BIOS Firmware = "bios" // SeaBIOS, QEMU's default
	UEFI Firmware = "uefi" // OVMF
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// OVMF firmware files (Debian package ovmf).
var (
	OVMFCode = "/usr/share/OVMF/OVMF_CODE_4M.fd"
	OVMFVars = "/usr/share/OVMF/OVMF_VARS_4M.fd"
)

// Forward is a host port forwarded to a guest port on the management NIC.
type Forward struct {
	Name      string `json:"name"`
	HostPort  int    `json:"hostPort"`
	GuestPort int    `json:"guestPort"`
}

// VM describes one machine.
type VM struct {
	Name string
	// Dir holds the VM's files: overlay, firmware vars, pidfile, console
	// log, monitor socket.
	Dir string
	// Image is the role image the overlay is made over (qcow2 or raw).
	Image string
	// DiskBytes is the overlay's virtual size (the root grows into it).
	DiskBytes int64
	// Seed is the NoCloud seed ISO.
	Seed      string
	CPUs      int
	MemoryMiB int64
	Firmware  Firmware
	Accel     string
	// Switch is the vde_switch socket directory of the cluster network
	// ("" for no cluster NIC).
	Switch        string
	ClusterMAC    string
	ManagementMAC string
	Forwards      []Forward

	// Bare-metal stand-ins (the metal target's tests): with no Image the
	// disk starts blank; Tap puts the cluster NIC on that tap device
	// instead of the switch, with no management NIC; NetBoot boots from
	// the disk first and from the network (iPXE) when the disk has nothing
	// to boot; Netns runs QEMU in that network namespace.
	Tap     string
	NetBoot bool
	Netns   string
	// NativePXE (with NetBoot, UEFI): no iPXE option ROM on the NIC, so
	// the firmware's own PXE boots, as on a machine whose NIC is not
	// iPXE, and chain-loads iPXE over TFTP as DHCP tells it.
	NativePXE bool
}

// Files of a VM in its Dir.
func (v *VM) overlay() string    { return filepath.Join(v.Dir, "disk.qcow2") }
func (v *VM) vars() string       { return filepath.Join(v.Dir, "OVMF_VARS.fd") }
func (v *VM) PIDFile() string    { return filepath.Join(v.Dir, "qemu.pid") }
func (v *VM) ConsoleLog() string { return filepath.Join(v.Dir, "console.log") }
func (v *VM) QMPSocket() string  { return filepath.Join(v.Dir, "qmp.sock") }
func (v *VM) qemuLog() string    { return filepath.Join(v.Dir, "qemu.log") }

// Args is the qemu-system-x86_64 command line (without the binary).
func (v *VM) Args() []string {
	args := []string{
		"-name", v.Name,
		"-machine", "q35", "-accel", accelArg(v.Accel),
		"-cpu", cpuModel(v.Accel),
		"-smp", strconv.Itoa(v.CPUs), "-m", strconv.FormatInt(v.MemoryMiB, 10),
		"-display", "none", "-vga", "none",
		"-serial", "file:" + v.ConsoleLog(),
		"-monitor", "none",
		"-qmp", "unix:" + v.QMPSocket() + ",server=on,wait=off",
		"-pidfile", v.PIDFile(),
		"-rtc", "base=utc",
		"-device", "virtio-rng-pci",
	}
	if v.NetBoot { // the disk first, then the NIC's iPXE
		args = append(args, "-drive", "if=none,id=disk0,file="+v.overlay()+",format=qcow2,discard=unmap,cache=unsafe",
			"-device", "virtio-blk-pci,drive=disk0,bootindex=1")
	} else {
		args = append(args, "-drive", "if=virtio,file="+v.overlay()+",format=qcow2,discard=unmap,cache=unsafe")
	}
	if v.Seed != "" {
		args = append(args, "-drive", "if=virtio,file="+v.Seed+",format=raw,readonly=on")
	}
	if v.Firmware == UEFI {
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+OVMFCode,
			"-drive", "if=pflash,format=raw,unit=1,file="+v.vars())
	}
	if v.Tap != "" {
		nic := "virtio-net-pci,netdev=cluster,mac=" + v.ClusterMAC
		if v.NetBoot {
			// QEMU's own iPXE ROM for virtio-net (legacy and UEFI,
			// /usr/lib/ipxe/qemu/efi-virtio.rom from ipxe-qemu) is loaded
			// by default. Named with its path (romfile=), SeaBIOS on q35
			// does not run it and a BIOS machine never network-boots
			// (measured: QEMU 7.2, SeaBIOS 1.16).
			nic += ",bootindex=2"
			if v.NativePXE {
				nic += ",romfile="
			}
		}
		args = append(args, "-netdev", "tap,id=cluster,ifname="+v.Tap+",script=no,downscript=no", "-device", nic)
		return append(args, "-daemonize")
	}
	if v.Switch != "" {
		args = append(args,
			"-netdev", "vde,id=cluster,sock="+v.Switch,
			"-device", "virtio-net-pci,netdev=cluster,mac="+v.ClusterMAC)
	}
	// restrict=on: the guest reaches nothing outside (air-gapped); only the
	// forwards come in.
	user := "user,id=mgmt,restrict=on"
	for _, f := range v.Forwards {
		user += fmt.Sprintf(",hostfwd=tcp:127.0.0.1:%d-:%d", f.HostPort, f.GuestPort)
	}
	args = append(args, "-netdev", user, "-device", "virtio-net-pci,netdev=mgmt,mac="+v.ManagementMAC)
	return append(args, "-daemonize")
}

func accelArg(a string) string {
	if a == AccelKVM {
		return "kvm"
	}
	// Multi-threaded TCG: one host thread per virtual CPU, and a 1 GiB
	// translation cache (tb-size in MiB; QEMU's default, named here).
	// When the cache is full QEMU empties all of it and the machine runs
	// its hot code through the translator again: measured with `info jit`
	// on a drills master (2026-12-07), the one flush after boot came 31 min
	// after up, during an API server restart, regenerated 330 MB of host
	// code in 40 s, and that kill had the API back after 1m43s against
	// 75-94 s without a flush. The largest cache QEMU takes (2048) avoided
	// that flush, but every boot with it was slower: VMs to kube-system pods
	// Ready 5m37s, 7m36s and 9m09s against 5m01s, 5m15s and 6m28s with 1 GiB
	// (the last two of each on the same evening, same host, same config:
	// 9m09s vs 6m28s). Cause not found; a first boot counts for more than a
	// flush on a long-lived machine.
	return "tcg,thread=multi,tb-size=" + fmt.Sprint(tcgCacheMiB)
}

// tcgCacheMiB is the TCG translation cache's size (see accelArg).
const tcgCacheMiB = 1024

// cpuModel is the guest CPU: every feature the accelerator can offer (not
// "host": under KVM, QEMU 7.2 aborts on an MSR assertion with it on some
// hosts), except AVX and AVX2 under TCG. TCG emulates them more slowly than
// the SSE paths Go falls back to: measured with qemu-user on this project's
// binaries, SHA-256 runs 1.6x faster without them (3.2 s vs 2.0 s for 64 MiB,
// which is what containerd does to every layer), ECDSA P-256 1.14x and
// kube-apiserver --version 1.2x.
// Nor 5-level paging (la57): Debian's kernel turns it on whenever the CPU
// has it, and under TCG every TLB miss is a page walk in software, one
// level more for each. TCG has no PCID either, so every context switch
// empties the TLB, and a TCG master switches 2,000-5,000 times a second.
func cpuModel(accel string) string {
	if accel == AccelKVM {
		return "max"
	}
	return "max,-avx,-avx2,-la57"
}

// Start creates the VM's files and starts it detached. It returns once QEMU
// has daemonized (the PID file exists).
func (v *VM) Start(ctx context.Context) (int, error) {
	if err := os.MkdirAll(v.Dir, 0o755); err != nil {
		return 0, err
	}
	if pid, ok := v.Running(); ok {
		return pid, fmt.Errorf("%s is already running (pid %d)", v.Name, pid)
	}
	fmtName := "qcow2"
	if strings.HasSuffix(v.Image, ".raw") {
		fmtName = "raw"
	}
	size := strconv.FormatInt(v.DiskBytes, 10)
	if _, err := os.Stat(v.overlay()); os.IsNotExist(err) {
		create := []string{"create", "-q", "-f", "qcow2", "-F", fmtName, "-b", v.Image, v.overlay(), size}
		if v.Image == "" { // a blank disk
			create = []string{"create", "-q", "-f", "qcow2", v.overlay(), size}
		}
		if out, err := exec.CommandContext(ctx, "qemu-img", create...).CombinedOutput(); err != nil {
			return 0, fmt.Errorf("create overlay for %s: %w\n%s", v.Name, err, out)
		}
	}
	if v.Firmware == UEFI {
		if _, err := os.Stat(v.vars()); os.IsNotExist(err) {
			data, err := os.ReadFile(OVMFVars)
			if err != nil {
				return 0, fmt.Errorf("UEFI firmware variables (install the Debian package ovmf): %w", err)
			}
			if err := os.WriteFile(v.vars(), data, 0o644); err != nil {
				return 0, err
			}
		}
	}
	_ = os.Remove(v.PIDFile())
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", v.Args()...)
	if v.Netns != "" {
		cmd = exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", v.Netns, "qemu-system-x86_64"}, v.Args()...)...)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	// Its own session: the VM must outlive the process that started it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Run(); err != nil {
		_ = os.WriteFile(v.qemuLog(), out.Bytes(), 0o644)
		return 0, fmt.Errorf("start %s: %w\n%s", v.Name, err, strings.TrimSpace(out.String()))
	}
	pid, ok := v.Running()
	if !ok {
		return 0, fmt.Errorf("start %s: qemu exited right after starting\n%s", v.Name, out.String())
	}
	return pid, nil
}

// PID reads the VM's pidfile.
func (v *VM) PID() (int, error) {
	data, err := os.ReadFile(v.PIDFile())
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(data)))
}

// Running reports whether the process in the pidfile is this VM's QEMU.
func (v *VM) Running() (int, bool) {
	pid, err := v.PID()
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, IsQEMU(pid, v.PIDFile())
}

// IsQEMU reports whether pid is alive and is a QEMU started with pidfile
// (so a recycled PID is never mistaken for the VM).
func IsQEMU(pid int, pidfile string) bool {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	args := strings.Split(string(cmdline), "\x00")
	return len(args) > 0 && strings.Contains(filepath.Base(args[0]), "qemu-system") &&
		bytes.Contains(cmdline, []byte(pidfile))
}

// Stop powers the VM off: an ACPI shutdown through QMP, then SIGTERM, then
// SIGKILL, each after a grace period. It is a no-op for a stopped VM.
func (v *VM) Stop(grace time.Duration) error {
	pid, ok := v.Running()
	if !ok {
		return nil
	}
	if grace > 0 && qmp(v.QMPSocket(), "system_powerdown") == nil && WaitExit(pid, grace) {
		return nil
	}
	return Kill(pid, v.PIDFile())
}

// Kill stops a QEMU by PID: SIGTERM, then SIGKILL.
func Kill(pid int, pidfile string) error {
	if !IsQEMU(pid, pidfile) {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	if WaitExit(pid, 5*time.Second) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return err
	}
	if !WaitExit(pid, 5*time.Second) {
		return fmt.Errorf("qemu pid %d did not exit", pid)
	}
	return nil
}

// Reset is a hard reset (QMP system_reset): the guest reboots at once, as
// if its reset button was pressed, with nothing written back or shut down.
func (v *VM) Reset() error {
	if _, ok := v.Running(); !ok {
		return fmt.Errorf("VM %s is not running", v.Dir)
	}
	return qmp(v.QMPSocket(), "system_reset")
}

// Quit is a hard stop (QMP quit): QEMU exits at once, as if the machine's
// power was cut; its disk stays, and the next up starts it again.
func (v *VM) Quit() error {
	pid, ok := v.Running()
	if !ok {
		return fmt.Errorf("VM %s is not running", v.Dir)
	}
	err := qmp(v.QMPSocket(), "quit")
	if !WaitExit(pid, 10*time.Second) {
		return fmt.Errorf("VM %s (pid %d) still runs 10s after quit: %v", v.Dir, pid, err)
	}
	return nil
}

// qmp sends one command over the QMP socket.
func qmp(sock, command string) error {
	c, err := net.DialTimeout("unix", sock, 2*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 4096)
	if _, err := c.Read(buf); err != nil { // greeting
		return err
	}
	for _, msg := range []string{`{"execute":"qmp_capabilities"}`, `{"execute":"` + command + `"}`} {
		if _, err := c.Write([]byte(msg + "\n")); err != nil {
			return err
		}
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if bytes.Contains(buf[:n], []byte(`"error"`)) {
			return fmt.Errorf("qmp %s: %s", command, buf[:n])
		}
	}
	return nil
}

// FreePort picks a free TCP port on 127.0.0.1 for a port forward, other
// than the ports in avoid (those this cluster already uses).
//
// It picks outside the kernel's ephemeral range (ip_local_port_range): the
// kernel hands ports of that range to every listener on port 0 and every
// outgoing connection — Pulumi's engine and plugins open several between
// kubeup choosing a port and QEMU binding it — so a port chosen there can
// be taken in between, and QEMU then fails with "Could not set up host
// forwarding rule". A port below the range is only ever taken by a program
// that asks for it by number.
func FreePort(avoid ...int) (int, error) {
	lo, hi := ephemeralRange()
	var ranges [][2]int // [first, last] of ports the kernel never hands out
	if lo-1 >= minForwardPort {
		ranges = append(ranges, [2]int{minForwardPort, lo - 1})
	}
	if hi+1 <= 65535 {
		ranges = append(ranges, [2]int{max(hi+1, minForwardPort), 65535})
	}
	total := 0
	for _, r := range ranges {
		total += r[1] - r[0] + 1
	}
	for try := 0; try < 200 && total > 0; try++ {
		n := rand.IntN(total)
		port := 0
		for _, r := range ranges {
			if size := r[1] - r[0] + 1; n < size {
				port = r[0] + n
				break
			} else {
				n -= size
			}
		}
		if slices.Contains(avoid, port) || !bindable(port) {
			continue
		}
		return port, nil
	}
	return 0, fmt.Errorf("no free TCP port on 127.0.0.1 outside the ephemeral range %d-%d", lo, hi)
}

// minForwardPort is the lowest port FreePort picks: below it are the ports
// well-known services are configured on.
const minForwardPort = 20000

// ephemeralRange is the kernel's ip_local_port_range (Linux's default if
// it cannot be read).
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l < 1 || h < l || h > 65535 {
		return lo, hi
	}
	return l, h
}

func bindable(port int) bool {
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	l.Close()
	return true
}
