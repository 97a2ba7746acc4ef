package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// probeTimeout is how long a KVM guest gets to reach systemd. With working
// KVM that takes a few seconds; where KVM is broken the guest hangs in the
// kernel, so /dev/kvm alone proves nothing.
const probeTimeout = 30 * time.Second

type probeResult struct {
	QEMU   string `json:"qemu"`
	Kernel string `json:"hostKernel"`
	Image  string `json:"image"`
	Accel  string `json:"accel"`
	Detail string `json:"detail"`
}

// ProbeAccel returns "kvm" when a KVM guest booted from image reaches
// systemd within probeTimeout, and "tcg" otherwise. The answer is cached in
// cacheDir per QEMU version, host kernel and image.
func ProbeAccel(ctx context.Context, cacheDir, image string) (string, error) {
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return AccelTCG, nil
	}
	f.Close()
	qv, _ := exec.CommandContext(ctx, "qemu-system-x86_64", "--version").Output()
	var uts syscall.Utsname
	_ = syscall.Uname(&uts)
	key := probeResult{QEMU: firstLine(string(qv)), Kernel: utsString(uts.Release[:]), Image: image}
	if fi, err := os.Stat(image); err == nil {
		key.Image = fmt.Sprintf("%s@%d", image, fi.ModTime().Unix())
	}
	cache := filepath.Join(cacheDir, "accel-probe.json")
	if data, err := os.ReadFile(cache); err == nil {
		var r probeResult
		if json.Unmarshal(data, &r) == nil && r.QEMU == key.QEMU && r.Kernel == key.Kernel && r.Image == key.Image {
			return r.Accel, nil
		}
	}
	accel, detail, err := probeKVM(ctx, image)
	if err != nil {
		return "", err
	}
	key.Accel, key.Detail = accel, detail
	data, _ := json.MarshalIndent(key, "", "  ")
	_ = os.MkdirAll(cacheDir, 0o755)
	_ = os.WriteFile(cache, append(data, '\n'), 0o644)
	return accel, nil
}

func probeKVM(ctx context.Context, image string) (string, string, error) {
	dir, err := os.MkdirTemp("", "kubeup-kvm-probe-")
	if err != nil {
		return "", "", err
	}
	defer os.RemoveAll(dir)
	vm := &VM{Name: "kvm-probe", Dir: dir, Image: image, DiskBytes: 4 << 30, CPUs: 1, MemoryMiB: 512,
		Firmware: BIOS, Accel: AccelKVM, ManagementMAC: "52:54:02:00:00:01"}
	// No seed: the probe only needs the kernel to hand over to systemd.
	vm.Seed = filepath.Join(dir, "empty.iso")
	if err := os.WriteFile(vm.Seed, make([]byte, 2048), 0o644); err != nil {
		return "", "", err
	}
	pid, err := vm.Start(ctx)
	if err != nil {
		// QEMU refusing KVM outright is an answer too.
		return AccelTCG, "start with KVM failed: " + firstLine(err.Error()), nil
	}
	defer Kill(pid, vm.PIDFile())
	deadline := time.Now().Add(probeTimeout)
	for time.Now().Before(deadline) {
		log, _ := os.ReadFile(vm.ConsoleLog())
		if bytes.Contains(log, []byte("systemd[1]:")) {
			return AccelKVM, "guest reached systemd", nil
		}
		if _, ok := vm.Running(); !ok {
			return AccelTCG, "the KVM guest exited", nil
		}
		select {
		case <-ctx.Done():
			return "", "", ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return AccelTCG, fmt.Sprintf("the KVM guest did not reach systemd in %s", probeTimeout), nil
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}

func utsString(b []int8) string {
	var out []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		out = append(out, byte(c))
	}
	return string(out)
}
