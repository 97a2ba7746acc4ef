package qemu

import (
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	vm := &VM{Name: "demo-master-0", Dir: "/vm", Image: "/img.qcow2", Seed: "/seed.iso", CPUs: 2, MemoryMiB: 2048,
		Firmware: UEFI, Accel: AccelTCG, Switch: "/net/sock", ClusterMAC: "52:54:00:4d:00:0a", ManagementMAC: "52:54:01:4d:00:0a",
		Forwards: []Forward{{Name: "apiserver", HostPort: 6443, GuestPort: 6443}, {Name: "agent", HostPort: 40000, GuestPort: 10290}}}
	args := strings.Join(vm.Args(), " ")
	for _, want := range []string{
		"-accel tcg,thread=multi,tb-size=1024", "-smp 2 -m 2048", "-serial file:/vm/console.log", "-pidfile /vm/qemu.pid",
		"if=virtio,file=/vm/disk.qcow2,format=qcow2", "if=virtio,file=/seed.iso,format=raw,readonly=on",
		"if=pflash,format=raw,unit=0,readonly=on,file=" + OVMFCode, "if=pflash,format=raw,unit=1,file=/vm/OVMF_VARS.fd",
		"-netdev vde,id=cluster,sock=/net/sock -device virtio-net-pci,netdev=cluster,mac=52:54:00:4d:00:0a",
		"-netdev user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:6443-:6443,hostfwd=tcp:127.0.0.1:40000-:10290",
		"-daemonize",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("args lack %q:\n%s", want, args)
		}
	}
	vm.Firmware, vm.Accel, vm.Switch = BIOS, AccelKVM, ""
	args = strings.Join(vm.Args(), " ")
	if strings.Contains(args, "pflash") || strings.Contains(args, "vde") || !strings.Contains(args, "-accel kvm") {
		t.Errorf("BIOS/KVM/no switch args:\n%s", args)
	}
}

// A pidfile naming a process that is not this VM's QEMU (a recycled PID)
// is not "running", and Stop leaves that process alone.
func TestRunningIgnoresOtherProcesses(t *testing.T) {
	dir := t.TempDir()
	vm := &VM{Dir: dir}
	os.WriteFile(filepath.Join(dir, "qemu.pid"), []byte("1\n"), 0o644)
	if _, ok := vm.Running(); ok {
		t.Error("PID 1 taken for the VM")
	}
	if err := vm.Stop(0); err != nil {
		t.Error(err)
	}
	os.WriteFile(filepath.Join(dir, "qemu.pid"), []byte("garbage"), 0o644)
	if _, ok := vm.Running(); ok {
		t.Error("garbage pidfile taken for a running VM")
	}
}

// Forward ports come from outside the kernel's ephemeral range (where
// Pulumi's plugins and every outgoing connection take theirs), differ from
// the ones to avoid, and are free.
func TestFreePort(t *testing.T) {
	lo, hi := ephemeralRange()
	var got []int
	for range 50 {
		p, err := FreePort(got...)
		if err != nil {
			t.Fatal(err)
		}
		if p >= lo && p <= hi {
			t.Errorf("port %d is in the ephemeral range %d-%d", p, lo, hi)
		}
		if p < minForwardPort || p > 65535 {
			t.Errorf("port %d is out of bounds", p)
		}
		if slices.Contains(got, p) {
			t.Errorf("port %d picked twice", p)
		}
		got = append(got, p)
	}
	// A port in use is never picked.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if bindable(l.Addr().(*net.TCPAddr).Port) {
		t.Error("a port with a listener counts as free")
	}
}

// The firmware's own PXE: the NIC has no option ROM.
func TestArgsNativePXE(t *testing.T) {
	v := &VM{Name: "cp1", Dir: "/vm", CPUs: 2, MemoryMiB: 2048, Firmware: UEFI, Accel: AccelTCG, Tap: "tap0", NetBoot: true, NativePXE: true, ClusterMAC: "52:54:00:77:00:10"}
	if got := strings.Join(v.Args(), " "); !strings.Contains(got, "mac=52:54:00:77:00:10,bootindex=2,romfile= ") {
		t.Errorf("args:\n%s", got)
	}
}

// A bare-metal stand-in: blank disk booted first, iPXE on a tap NIC
// second, no seed and no management NIC.
func TestArgsNetBoot(t *testing.T) {
	v := &VM{Name: "w1", Dir: "/vm", CPUs: 2, MemoryMiB: 2048, Firmware: BIOS, Accel: AccelTCG, Tap: "tap1", NetBoot: true, ClusterMAC: "52:54:00:77:01:00"}
	got := strings.Join(v.Args(), " ")
	for _, want := range []string{
		"-drive if=none,id=disk0,file=/vm/disk.qcow2,format=qcow2,discard=unmap,cache=unsafe -device virtio-blk-pci,drive=disk0,bootindex=1",
		"-netdev tap,id=cluster,ifname=tap1,script=no,downscript=no -device virtio-net-pci,netdev=cluster,mac=52:54:00:77:01:00,bootindex=2",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("args lack %q:\n%s", want, got)
		}
	}
	for _, unwanted := range []string{"seed", "mgmt", "vde", "romfile"} {
		if strings.Contains(got, unwanted) {
			t.Errorf("args have %q:\n%s", unwanted, got)
		}
	}
}
