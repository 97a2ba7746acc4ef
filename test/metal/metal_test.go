package metal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"kubeup.dev/kubeup/infra/qemu"
	"kubeup.dev/kubeup/test/e2e"
)

// The test network: a bridge in its own namespace, the boot server on .1.
const (
	bridgeAddr = "192.168.77.1"
	server     = bridgeAddr + ":8080"
)

type vm struct {
	name, mac, firmware string
	netboot             bool // else: from the disk kubeup metal disk wrote
}

var machines = []vm{
	{"cp1", "52:54:00:77:00:10", "uefi", true},
	{"w1", "52:54:00:77:01:00", "bios", true},
	{"w2", "52:54:00:77:01:01", "uefi", false},
}

const clusterYAML = `apiVersion: kubeup.dev/v1alpha1
kind: Cluster
metadata: {name: rack}
spec:
  network: {machineCIDR: 192.168.77.0/24}
  target:
    provider: metal
    metal:
      server: ` + server + `
      machines:
      - {name: cp1, role: master, mac: "52:54:00:77:00:10", firmware: uefi}
      - {name: w1, role: node, mac: "52:54:00:77:01:00", firmware: bios, dhcp: true}
      - {name: w2, role: node, mac: "52:54:00:77:01:01", firmware: uefi}
`

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// TestE2EMetal: two blank machines network-boot (UEFI and BIOS) behind
// dnsmasq, install and join; a third boots from a disk kubeup metal disk
// wrote; then, with the server gone, a reset machine comes back from its
// own disk.
func TestE2EMetal(t *testing.T) {
	if os.Getenv("KUBEUP_E2E_METAL") != "1" {
		t.Skip("boots three QEMU machines from the network: make e2e-metal (KUBEUP_E2E_METAL=1)")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: a network namespace, a bridge and taps")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Minute)
	defer cancel()
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	ns := fmt.Sprintf("kubeup-metal-%d", os.Getpid())
	run(t, "ip", "netns", "add", ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	in := func(args ...string) { run(t, "ip", append([]string{"-n", ns}, args...)...) }
	in("link", "set", "lo", "up")
	in("link", "add", "br0", "type", "bridge")
	in("addr", "add", bridgeAddr+"/24", "dev", "br0")
	in("link", "set", "br0", "up")
	for i := range machines {
		tap := fmt.Sprintf("tap%d", i)
		in("tuntap", "add", "dev", tap, "mode", "tap")
		in("link", "set", tap, "master", "br0")
		in("link", "set", tap, "up")
	}

	// The network's own DHCP server, configured as the README says.
	conf := filepath.Join(dir, "dnsmasq.conf")
	os.WriteFile(conf, []byte(DnsmasqConf("br0", "192.168.77.150", "192.168.77.199", server,
		[]DHCPHost{{MAC: "52:54:00:77:01:00", IP: "192.168.77.100", Name: "w1"}})), 0o644)
	dnsmasq := exec.Command("ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground", "--conf-file="+conf, "--pid-file=", "--log-dhcp", "--log-facility="+filepath.Join(dir, "dnsmasq.log"))
	if err := dnsmasq.Start(); err != nil {
		t.Fatalf("dnsmasq: %v", err)
	}
	t.Cleanup(func() { _ = dnsmasq.Process.Kill(); _ = dnsmasq.Wait() })

	cfg := filepath.Join(dir, "rack.yaml")
	os.WriteFile(cfg, []byte(clusterYAML), 0o644)
	bin := filepath.Join(e2e.RepoRoot(), "bin", "kubeup")
	// w2's boot disk, before up: the same PKI serves both.
	w2disk := filepath.Join(dir, "w2.raw")
	if out, err := e2e.Kubeup(t, ctx, dataDir, "metal", "disk", "--config", cfg, "--machine", "w2", "--out", w2disk); err != nil {
		t.Fatalf("metal disk: %v\n%s", err, out)
	}

	upLog := filepath.Join(dir, "up.log")
	logf, _ := os.Create(upLog)
	up := exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin, "up", "--config", cfg, "--install-timeout", "40m", "--timeout", "25m")
	up.Env = append(os.Environ(), "KUBEUP_DATA_DIR="+dataDir)
	up.Stdout, up.Stderr = logf, logf
	up.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := up.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-up.Process.Pid, syscall.SIGKILL)
		_, _ = e2e.Kubeup(t, context.Background(), dataDir, "down", "--name", "rack")
	})
	if err := waitLine(ctx, upLog, "boot server serving", 30*time.Minute); err != nil {
		t.Fatal(err)
	}

	var vms []*qemu.VM
	for i, m := range machines {
		v := &qemu.VM{Name: m.name, Dir: filepath.Join(dir, "vms", m.name), DiskBytes: 12 << 30, CPUs: 2, MemoryMiB: 2048,
			Firmware: qemu.Firmware(m.firmware), Accel: qemu.AccelTCG, Tap: fmt.Sprintf("tap%d", i), ClusterMAC: m.mac, NetBoot: m.netboot, Netns: ns}
		if m.name == "cp1" {
			v.MemoryMiB = 3072
		}
		if !m.netboot {
			v.Image = w2disk
		}
		if _, err := v.Start(ctx); err != nil {
			t.Fatal(err)
		}
		vms = append(vms, v)
		t.Cleanup(func() { _ = v.Stop(5 * time.Second) })
	}
	upErr := up.Wait()
	logf.Close()
	out, _ := os.ReadFile(upLog)
	t.Logf("kubeup up:\n%s", out)
	if upErr != nil {
		for _, v := range vms {
			con, _ := os.ReadFile(v.ConsoleLog())
			t.Logf("%s console (end):\n%s", v.Name, tailLines(string(con), 40))
		}
		t.Fatalf("kubeup up: %v", upErr)
	}
	for _, want := range []string{"cp1: installed to /dev/vda", "w1: installed to /dev/vda", "all nodes Ready (3)", "the boot server stopped"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("up's progress lacks %q", want)
		}
	}
	if strings.Contains(string(out), "w2 fetches") || strings.Contains(string(out), "w2 (") {
		t.Errorf("w2, booted from its own disk, used the boot server")
	}

	// The server is gone: a hard reset of w1 boots from its disk.
	boots := func() int {
		con, _ := os.ReadFile(vms[1].ConsoleLog())
		return strings.Count(string(con), "Linux version")
	}
	before := boots()
	if err := vms[1].Reset(); err != nil {
		t.Fatal(err)
	}
	kubectl, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache", "kubeup", "artifacts", "kubernetes", "*", "root", "usr", "local", "bin", "kubectl"))
	if len(kubectl) == 0 {
		t.Fatal("no kubectl artifact (make deps)")
	}
	kc := filepath.Join(dataDir, "clusters", "rack", "kubeconfig")
	// Ready again once it has booted anew (its Node stays Ready until its
	// lease lapses, so the boot is counted on its console).
	deadline := time.Now().Add(15 * time.Minute)
	for {
		o, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, kubectl[0], "--kubeconfig", kc, "wait", "--for=condition=Ready", "node/w1", "--timeout=60s").CombinedOutput()
		if err == nil && boots() > before {
			break
		}
		if time.Now().After(deadline) {
			con, _ := os.ReadFile(vms[1].ConsoleLog())
			t.Fatalf("w1 not Ready from its own disk after a reset (boots %d → %d): %v %s\nconsole:\n%s", before, boots(), err, o, tailLines(string(con), 40))
		}
		time.Sleep(10 * time.Second)
	}
}

// waitLine waits until a line of the file contains s.
func waitLine(ctx context.Context, file, s string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if f, err := os.Open(file); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if strings.Contains(sc.Text(), s) {
					f.Close()
					return nil
				}
			}
			f.Close()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(2 * time.Second):
		}
	}
	out, _ := os.ReadFile(file)
	return fmt.Errorf("no %q in %s within %s:\n%s", s, file, limit, out)
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
