package infra_test

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/infra"
	"kubeup.dev/kubeup/infra/qemu"
	"kubeup.dev/kubeup/provision/cluster"
)

// engine returns an Engine on the cached Pulumi CLI and a provider plugin
// built from this tree, with its own data directory.
func engine(t *testing.T) *infra.Engine {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the Pulumi engine")
	}
	cacheDir, err := artifacts.DefaultCacheDir()
	if err != nil {
		t.Fatal(err)
	}
	root := cluster.PulumiRoot(cacheDir)
	if _, err := os.Stat(filepath.Join(root, "bin", "pulumi")); err != nil {
		t.Skip("no cached Pulumi CLI (make deps builds it): ", err)
	}
	for _, tool := range []string{"vde_switch", "qemu-system-x86_64", "qemu-img"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool, " not installed (make deps installs it)")
		}
	}
	_, file, _, _ := runtime.Caller(0)
	plugins := t.TempDir()
	// The flags of make build, so the compiled packages come from its cache.
	build := exec.Command("go", "build", "-trimpath", "-o", filepath.Join(plugins, "pulumi-resource-kubeup"), "./cmd/pulumi-resource-kubeup")
	build.Dir = filepath.Join(filepath.Dir(file), "..")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the provider plugin: %v\n%s", err, out)
	}
	return &infra.Engine{DataDir: t.TempDir(), PulumiRoot: root, PluginDir: plugins}
}

// The real engine with kubeup's provider: up creates the cluster network
// (a vde_switch), a machine that cannot start fails with an error that
// names it and QEMU's reason (not the engine's resource counts), and
// destroy leaves no process, no file and no stack.
func TestEngineUpAndDestroy(t *testing.T) {
	e := engine(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	dir := t.TempDir()
	c := infra.LocalCluster{Name: "enginetest", Dir: filepath.Join(dir, "cluster"), Accel: qemu.AccelTCG}
	sw := &qemu.Switch{Dir: c.SwitchDir()}
	t.Cleanup(func() { _ = sw.Stop() })

	if err := e.UpLocal(ctx, c); err != nil {
		t.Fatal(err)
	}
	pid, ok := sw.Running()
	if !ok {
		t.Fatal("no vde_switch after up")
	}

	// A machine whose SSH forward's host port is taken.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	taken := l.Addr().(*net.TCPAddr).Port
	image := filepath.Join(dir, "tiny.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", image, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, out)
	}
	seed := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(seed, make([]byte, 2048), 0o644); err != nil {
		t.Fatal(err)
	}
	c.Machines = []infra.Machine{{
		Name: "node-1", Role: "node", Image: image, ImageSHA: "x", Seed: seed, SeedSHA: "y",
		CPUs: 1, MemoryMiB: 128, DiskBytes: 32 << 20, Firmware: qemu.BIOS,
		ClusterMAC: "52:54:00:00:00:01", ManagementMAC: "52:54:01:00:00:01",
		Forwards: []qemu.Forward{{Name: "ssh", HostPort: taken, GuestPort: 22}},
	}}
	err = e.UpLocal(ctx, c)
	if err == nil {
		vm := &qemu.VM{Dir: c.MachineDir("node-1")}
		_ = vm.Stop(0)
		t.Fatal("up started a machine whose host port is taken")
	}
	msg := err.Error()
	t.Logf("up with a taken port: %s", msg)
	for _, want := range []string{"node-1", "Could not set up host forwarding rule"} {
		if !strings.Contains(msg, want) {
			t.Errorf("up's error does not name %q:\n%s", want, msg)
		}
	}
	for _, noise := range []string{"Duration:", "Resources:", "stdout:", "warning: using"} {
		if strings.Contains(msg, noise) {
			t.Errorf("up's error carries the engine's %q:\n%s", noise, msg)
		}
	}

	if _, err := os.Stat(c.MachineDir("node-1")); !os.IsNotExist(err) {
		t.Errorf("the failed machine's directory is left behind (%v)", err)
	}

	if err := e.Destroy(ctx, c.Name); err != nil {
		t.Fatal(err)
	}
	if _, ok := sw.Running(); ok {
		t.Errorf("vde_switch (pid %d) still runs after destroy", pid)
	}
	if _, err := os.Stat(c.SwitchDir()); !os.IsNotExist(err) {
		t.Errorf("%s left after destroy (%v)", c.SwitchDir(), err)
	}
	if files := e.StackFiles(c.Name); len(files) > 0 {
		t.Errorf("the state backend keeps files of the destroyed stack: %v", files)
	}
	if err := e.Destroy(ctx, c.Name); !errors.Is(err, infra.ErrNoStack) {
		t.Errorf("second destroy: %v, want ErrNoStack", err)
	}
}
