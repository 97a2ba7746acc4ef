package cluster

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/images/disk"
	"kubeup.dev/kubeup/provision/config"
)

// The metal bring-up up to the boot server, on this host without machines:
// state, PKI, render, assets from a small disk, and the server answering
// iPXE by MAC and refusing a seed to an address that is not the machine's.
func TestMetalServesTheBoot(t *testing.T) {
	bin := filepath.Join("..", "..", "bin")
	if _, err := os.Stat(filepath.Join(bin, "kubeup-addons")); err != nil {
		t.Skip("make build writes bin/kubeup-addons, whose image the UI addon runs")
	}
	for _, tool := range []string{"mkfs.ext4", "mkfs.vfat", "mcopy", "mtype", "syslinux", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps)", tool)
		}
	}
	if _, err := os.Stat(disk.SystemdBootEFI); err != nil {
		t.Skip("systemd-boot not installed (make deps)")
	}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c, err := config.Parse([]byte(fmt.Sprintf(`apiVersion: kubeup.dev/v1alpha1
kind: Cluster
metadata: {name: rack}
spec:
  network: {machineCIDR: 192.168.10.0/24}
  target:
    provider: metal
    metal:
      server: %s
      machines:
      - {name: cp1, role: master, mac: "52:54:00:10:00:10"}
      - {name: w1, role: node, mac: "52:54:00:10:01:00", firmware: bios}
`, addr)))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	// A small disk stands for both role images.
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	k, i := filepath.Join(dir, "k"), filepath.Join(dir, "i")
	os.WriteFile(k, []byte("kernel"), 0o644)
	os.WriteFile(i, []byte("initrd"), 0o644)
	raw := filepath.Join(dir, "role.raw")
	if _, err := disk.Build(context.Background(), raw, disk.Options{Root: root, Boot: disk.Boot{Kernel: k, Initrd: i, Cmdline: "console=ttyS0"},
		ESPSize: 40 << 20, Slack: 8 << 20, WorkDir: dir, SourceDateEpoch: 1}); err != nil {
		t.Fatal(err)
	}
	binDir := t.TempDir()
	for _, b := range []string{"kubeup-addons", "kubeup-installer"} {
		data, _ := os.ReadFile(filepath.Join(bin, b))
		if b == "kubeup-installer" {
			data = []byte("installer")
		}
		os.WriteFile(filepath.Join(binDir, b), data, 0o755)
	}
	var progress strings.Builder
	o := Options{DataDir: filepath.Join(dir, "data"), CacheDir: filepath.Join(dir, "cache"), BinDir: binDir, Progress: &progress}
	o.defaults()
	u := &bringUp{cfg: c, opts: o, dir: Dir(o.DataDir, "rack"), imageFormat: "raw",
		images: map[components.Role]string{components.Master: raw, components.Node: raw}}
	u.timings = newTimings("rack", 2, io.Discard)
	steps := metalSteps()
	if steps[5].name != "boot server serving" {
		t.Fatalf("steps %v", steps)
	}
	if err := runSteps(context.Background(), u, steps[1:4]); err != nil { // state, PKI, render
		t.Fatal(err)
	}
	// w1 has a boot disk (kubeup metal disk): not served, not waited for.
	if err := u.diskInstalled("52-54-00-10-01-00"); err != nil {
		t.Fatal(err)
	}
	if err := runSteps(context.Background(), u, steps[4:6]); err != nil { // assets, server
		t.Fatal(err)
	}
	defer u.metal.finish(context.Background(), nil, o)
	if got := u.state.APIServerURL(); got != "https://192.168.10.10:6443" {
		t.Errorf("API server URL %s", got)
	}
	if got := u.state.AgentURL(u.state.Machines[1]); got != "https://192.168.10.100:10290" {
		t.Errorf("agent URL %s", got)
	}
	kc, _ := os.ReadFile(filepath.Join(u.dir, kubeconfigFile))
	if !strings.Contains(string(kc), "server: https://192.168.10.10:6443") {
		t.Errorf("kubeconfig:\n%s", kc)
	}
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if _, body := get("/ipxe/52-54-00-10-00-10"); !strings.Contains(body, "kernel http://"+addr+"/assets/master/vmlinuz") || !strings.Contains(body, "kubeup.machine=cp1") {
		t.Errorf("cp1's script:\n%s", body)
	}
	if _, body := get("/ipxe/52-54-00-10-01-00"); !strings.Contains(body, "w1 is installed; booting from its disk") {
		t.Errorf("w1 (boot disk) script:\n%s", body)
	}
	// From 127.0.0.1, which is no machine's address, even a right path is refused.
	if code, _ := get("/nocloud/52:54:00:10:00:10/x/user-data"); code != http.StatusForbidden {
		t.Errorf("the master's seed to loopback: %d", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := waitInstalled(ctx, u); err == nil || !strings.Contains(err.Error(), "not installed: cp1 (") {
		t.Errorf("waitInstalled: %v", err)
	}
	if !strings.Contains(progress.String(), "point your DHCP server's iPXE clients at http://"+addr+"/boot.ipxe") {
		t.Errorf("progress:\n%s", progress.String())
	}
}
