package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestArgs(t *testing.T) {
	vm := &VM{Name: "demo-master-0", Dir: "/vm", Image: "/img.qcow2", Seed: "/seed.iso", CPUs: 2, MemoryMiB: 2048,
		Firmware: UEFI, Accel: AccelTCG, Switch: "/net/sock", ClusterMAC: "52:54:00:4d:00:0a", MgmtMAC: "52:54:01:4d:00:0a",
		Forwards: []Forward{{Name: "apiserver", HostPort: 6443, GuestPort: 6443}, {Name: "agent", HostPort: 40000, GuestPort: 10290}}}
	args := strings.Join(vm.Args(), " ")
	for _, want := range []string{
		"-accel tcg,thread=multi", "-smp 2 -m 2048", "-serial file:/vm/console.log", "-pidfile /vm/qemu.pid",
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
