package provider

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"kubeup.dev/kubeup/infra/qemu"
)

type switchKind struct{}

func (switchKind) check(p resource.PropertyMap) []*pulumirpc.CheckFailure {
	return requireStrings(p, "dir")
}

func (switchKind) create(ctx context.Context, p resource.PropertyMap) (string, resource.PropertyMap, error) {
	sw := &qemu.Switch{Dir: str(p, "dir")}
	pid, err := sw.Start(ctx)
	if err != nil {
		return "", nil, err
	}
	out := p.Copy()
	out["socket"] = resource.NewStringProperty(sw.Socket())
	out["pid"] = resource.NewNumberProperty(float64(pid))
	return sw.Dir, out, nil
}

func (switchKind) read(_ context.Context, id string, state resource.PropertyMap) (resource.PropertyMap, bool, error) {
	sw := &qemu.Switch{Dir: id}
	pid, ok := sw.Running()
	if !ok {
		return nil, false, nil
	}
	out := state.Copy()
	out["pid"] = resource.NewNumberProperty(float64(pid))
	return out, true, nil
}

func (switchKind) delete(_ context.Context, id string, _ resource.PropertyMap) error {
	sw := &qemu.Switch{Dir: id}
	if err := sw.Stop(); err != nil {
		return err
	}
	return os.RemoveAll(sw.Dir)
}

type machineKind struct{}

func (machineKind) check(p resource.PropertyMap) []*pulumirpc.CheckFailure {
	f := requireStrings(p, "name", "dir", "image", "seed", "firmware", "accel", "clusterMAC", "managementMAC")
	for _, k := range []string{"cpus", "memoryMiB", "diskBytes"} {
		if v, ok := p[resource.PropertyKey(k)]; !ok || !v.IsNumber() || v.NumberValue() <= 0 {
			f = append(f, &pulumirpc.CheckFailure{Property: k, Reason: k + " must be a positive number"})
		}
	}
	if fw := str(p, "firmware"); fw != "" && fw != string(qemu.BIOS) && fw != string(qemu.UEFI) {
		f = append(f, &pulumirpc.CheckFailure{Property: "firmware", Reason: fmt.Sprintf("%q is not bios or uefi", fw)})
	}
	if a := str(p, "accel"); a != "" && !slices.Contains([]string{qemu.AccelKVM, qemu.AccelTCG}, a) {
		f = append(f, &pulumirpc.CheckFailure{Property: "accel", Reason: fmt.Sprintf("%q is not kvm or tcg", a)})
	}
	for _, k := range []string{"image", "seed"} {
		if v := str(p, k); v != "" {
			if _, err := os.Stat(v); err != nil {
				f = append(f, &pulumirpc.CheckFailure{Property: k, Reason: err.Error()})
			}
		}
	}
	return f
}

func vmOf(p resource.PropertyMap) *qemu.VM {
	vm := &qemu.VM{
		Name: str(p, "name"), Dir: str(p, "dir"), Image: str(p, "image"), Seed: str(p, "seed"),
		CPUs: num(p, "cpus"), MemoryMiB: int64(num(p, "memoryMiB")), DiskBytes: int64(p["diskBytes"].NumberValue()),
		Firmware: qemu.Firmware(str(p, "firmware")), Accel: str(p, "accel"), Switch: str(p, "switch"),
		ClusterMAC: str(p, "clusterMAC"), ManagementMAC: str(p, "managementMAC"),
	}
	if fw, ok := p["forwards"]; ok && fw.IsArray() {
		for _, e := range fw.ArrayValue() {
			if !e.IsObject() {
				continue
			}
			o := e.ObjectValue()
			vm.Forwards = append(vm.Forwards, qemu.Forward{Name: str(o, "name"), HostPort: num(o, "hostPort"), GuestPort: num(o, "guestPort")})
		}
	}
	return vm
}

func (machineKind) create(ctx context.Context, p resource.PropertyMap) (string, resource.PropertyMap, error) {
	vm := vmOf(p)
	pid, err := vm.Start(ctx)
	if err != nil {
		// A failed create leaves no resource in the state, so nothing would
		// ever delete what Start made (the overlay, firmware variables).
		if _, running := vm.Running(); !running && vm.Dir != "" && filepath.Clean(vm.Dir) != "/" {
			_ = os.RemoveAll(vm.Dir)
		}
		return "", nil, err
	}
	out := p.Copy()
	out["pid"] = resource.NewNumberProperty(float64(pid))
	out["consoleLog"] = resource.NewStringProperty(vm.ConsoleLog())
	return vm.Dir, out, nil
}

func (machineKind) read(_ context.Context, id string, state resource.PropertyMap) (resource.PropertyMap, bool, error) {
	vm := vmOf(state)
	vm.Dir = id
	pid, ok := vm.Running()
	if !ok {
		return nil, false, nil
	}
	out := state.Copy()
	out["pid"] = resource.NewNumberProperty(float64(pid))
	return out, true, nil
}

func (machineKind) delete(_ context.Context, id string, state resource.PropertyMap) error {
	vm := vmOf(state)
	vm.Dir = id
	if err := vm.Stop(0); err != nil {
		return err
	}
	if filepath.Clean(id) == "/" || id == "" {
		return fmt.Errorf("refusing to remove machine directory %q", id)
	}
	return os.RemoveAll(id)
}

func str(p resource.PropertyMap, k string) string {
	if v, ok := p[resource.PropertyKey(k)]; ok && v.IsString() {
		return v.StringValue()
	}
	return ""
}

func num(p resource.PropertyMap, k string) int {
	if v, ok := p[resource.PropertyKey(k)]; ok && v.IsNumber() {
		return int(v.NumberValue())
	}
	return 0
}

func requireStrings(p resource.PropertyMap, keys ...string) []*pulumirpc.CheckFailure {
	var f []*pulumirpc.CheckFailure
	for _, k := range keys {
		if str(p, k) == "" {
			f = append(f, &pulumirpc.CheckFailure{Property: k, Reason: k + " is required"})
		}
	}
	return f
}
