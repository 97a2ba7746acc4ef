package metal

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
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
	nativePXE           bool // the firmware's own PXE, which chain-loads iPXE over TFTP
}

var machines = []vm{
	{"cp1", "52:54:00:77:00:10", "uefi", true, true},
	{"w1", "52:54:00:77:01:00", "bios", true, false},
	{"w2", "52:54:00:77:01:01", "uefi", false, false},
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
      proxyDHCP: true
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

// TestE2EMetal: blank machines network-boot behind the network's own DHCP
// server (dnsmasq, on another "host"): cp1 by UEFI with the firmware's own
// PXE, which the README's dnsmasq settings send to iPXE over kubeup's TFTP
// and then to kubeup's boot script; w1 by BIOS with QEMU's iPXE ROM, its
// boot file named by kubeup's proxyDHCP alone. Both install and join; w2
// boots from the disk kubeup metal disk wrote, with no seed attached; the
// cluster passes kubeup verify; then, with the server gone, each
// network-installed machine is reset and comes back from its own disk.
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
	if keep := os.Getenv("KUBEUP_E2E_DIR"); keep != "" { // logs and disks outlive the test
		dir = keep
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
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

	// The network's own DHCP server, on another host (a namespace joined
	// to the bridge): configured as the README says for cp1; for w1 it only
	// leases the address, and kubeup's proxyDHCP names the boot file.
	dhcpNS := ns + "-dhcp"
	run(t, "ip", "netns", "add", dhcpNS)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", dhcpNS).Run() })
	in("link", "add", "dhcp0", "type", "veth", "peer", "name", "dhcp1", "netns", dhcpNS)
	in("link", "set", "dhcp0", "master", "br0")
	in("link", "set", "dhcp0", "up")
	run(t, "ip", "-n", dhcpNS, "addr", "add", "192.168.77.2/24", "dev", "dhcp1")
	run(t, "ip", "-n", dhcpNS, "link", "set", "dhcp1", "up")
	conf := filepath.Join(dir, "dnsmasq.conf")
	os.WriteFile(conf, []byte(DnsmasqConf("dhcp1", "192.168.77.150", "192.168.77.199", server,
		[]DHCPHost{{MAC: "52:54:00:77:01:00", IP: "192.168.77.100", Name: "w1"}}, "52:54:00:77:01:00")+
		"dhcp-option=option:router,"+bridgeAddr+"\n"), 0o644)
	dnsmasqLog := filepath.Join(dir, "dnsmasq.log")
	dnsmasq := exec.Command("ip", "netns", "exec", dhcpNS, "dnsmasq", "--keep-in-foreground", "--conf-file="+conf, "--pid-file=", "--log-dhcp", "--log-facility="+dnsmasqLog)
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

	// The two network-booted machines power on together; w2, with its
	// boot disk, once they are installed (this host has 2 cores for three
	// emulated machines: installing, booting and a third machine at once
	// starve the master).
	vms := map[string]*qemu.VM{}
	poweredOn := map[string]time.Time{}
	installed := watchInstalls(ctx, upLog)
	powerOn := func(i int) {
		m := machines[i]
		v := &qemu.VM{Name: m.name, Dir: filepath.Join(dir, "vms", m.name), DiskBytes: 12 << 30, CPUs: 1, MemoryMiB: 2048,
			Firmware: qemu.Firmware(m.firmware), Accel: qemu.AccelTCG, Tap: fmt.Sprintf("tap%d", i), ClusterMAC: m.mac, NetBoot: m.netboot, NativePXE: m.nativePXE, Netns: ns}
		if m.name == "cp1" {
			v.CPUs, v.MemoryMiB = 2, 3072
		}
		if !m.netboot {
			v.Image = w2disk
		}
		if _, err := v.Start(ctx); err != nil {
			t.Fatal(err)
		}
		poweredOn[m.name] = time.Now()
		vms[m.name] = v
		t.Cleanup(func() { _ = v.Stop(5 * time.Second) })
	}
	upDone := make(chan error, 1)
	go func() { upDone <- up.Wait() }()
	powerOn(0)
	powerOn(1)
	var upErr error
	exited := false
	for !exited && !installed.has("cp1", "w1") {
		select {
		case <-ctx.Done():
			t.Fatal(ctx.Err())
		case upErr = <-upDone:
			exited = true
		case <-time.After(2 * time.Second):
		}
	}
	if !exited {
		powerOn(2)
		upErr = <-upDone
	}
	ready := time.Now()
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
	for _, want := range []string{"cp1: installed to /dev/vda", "w1: installed to /dev/vda", "all nodes Ready (3)", "the boot server stopped", "w2 did not boot from the network", "cp1: network boot → installed"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("up's progress lacks %q", want)
		}
	}
	if strings.Contains(string(out), "w2 fetches") || strings.Contains(string(out), "w2 (") {
		t.Errorf("w2, booted from its own disk, used the boot server")
	}
	if !strings.Contains(string(out), "cp1 fetches iPXE (ipxe.efi) over TFTP") {
		t.Errorf("cp1's UEFI PXE did not chain-load iPXE from kubeup's TFTP")
	}
	if !strings.Contains(string(out), "proxyDHCP: w1 (52:54:00:77:01:00) sent to http://"+server+"/boot.ipxe") {
		t.Errorf("w1 was not answered by proxyDHCP")
	}
	if booted := bootFiles(t, dnsmasqLog, "52:54:00:77:01:00"); len(booted) != 0 {
		t.Errorf("dnsmasq named w1's boot file (%v): proxyDHCP was not needed", booted)
	}
	if booted := bootFiles(t, dnsmasqLog, "52:54:00:77:00:10"); len(booted) == 0 {
		t.Errorf("dnsmasq did not name cp1's boot file: the README's settings were not used")
	}
	for _, m := range machines {
		how := "network boot"
		if !m.netboot {
			how = "boot disk"
		}
		if m.nativePXE {
			how = "UEFI PXE, iPXE over TFTP"
		}
		at, ok := installed.at(m.name)
		inst := "-"
		if ok {
			inst = at.Sub(poweredOn[m.name]).Round(time.Second).String()
		}
		t.Logf("figures: %s (%s, %s): power-on → installed %s, → all Ready %s", m.name, m.firmware, how, inst, ready.Sub(poweredOn[m.name]).Round(time.Second))
	}

	// w2 has shown what it is for (a boot disk joins); it is stopped and
	// its Node deleted, so that verify and the resets share this host's two
	// cores among two emulated machines, not three (with three, a verify
	// pod waited 5 minutes on w1 to start and the DNS check timed out).
	if err := vms["w2"].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
	if o, err := exec.CommandContext(ctx, "ip", "netns", "exec", ns, kubectlPath(t), "--kubeconfig", kcPath(dataDir), "delete", "node", "w2").CombinedOutput(); err != nil {
		t.Fatalf("delete node w2: %v %s", err, o)
	}

	// The cluster does its job: kubeup verify's workloads, from the
	// machines' network.
	verify := exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin, "verify", "--name", "rack")
	verify.Env = append(os.Environ(), "KUBEUP_DATA_DIR="+dataDir)
	vstart := time.Now()
	vout, verr := verify.CombinedOutput()
	t.Logf("kubeup verify (%s):\n%s", time.Since(vstart).Round(time.Second), vout)
	if verr != nil {
		t.Fatalf("kubeup verify: %v", verr)
	}

	// The server is gone: a hard reset of each network-installed machine
	// boots it from its own disk, and it is Ready again.
	kubectl, kc := []string{kubectlPath(t)}, kcPath(dataDir)
	kubectlOut := func(args ...string) (string, error) {
		o, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, kubectl[0], "--kubeconfig", kc}, args...)...).CombinedOutput()
		return strings.TrimSpace(string(o)), err
	}
	for _, name := range []string{"w1", "cp1"} {
		v := vms[name]
		// The Node's boot ID is the kubelet's report of the machine's
		// boot: a new one, with the Node Ready, is the machine back from
		// its own disk (its old Ready status outlives the reset until its
		// lease lapses).
		bootID, err := kubectlOut("get", "node", name, "-o", "jsonpath={.status.nodeInfo.bootID}")
		if err != nil || bootID == "" {
			t.Fatalf("%s: boot ID %q: %v", name, bootID, err)
		}
		reset := time.Now()
		if err := v.Reset(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(15 * time.Minute)
		for {
			id, _ := kubectlOut("get", "node", name, "-o", "jsonpath={.status.nodeInfo.bootID}")
			o, err := kubectlOut("wait", "--for=condition=Ready", "node", "--all", "--timeout=60s")
			if err == nil && id != "" && id != bootID {
				t.Logf("figures: %s reset with the boot server gone: booted from its disk (boot ID %s → %s), all nodes Ready %s after the reset", name, bootID[:8], id[:8], time.Since(reset).Round(time.Second))
				break
			}
			if time.Now().After(deadline) {
				con, _ := os.ReadFile(v.ConsoleLog())
				t.Fatalf("%s: not back from its own disk after a reset (boot ID %s → %q): %v %s\nconsole:\n%s", name, bootID, id, err, o, tailLines(string(con), 40))
			}
			time.Sleep(10 * time.Second)
		}
	}
}

// kubectlPath is the kubectl of the pinned Kubernetes artifacts.
func kubectlPath(t *testing.T) string {
	kubectl, _ := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache", "kubeup", "artifacts", "kubernetes", "*", "root", "usr", "local", "bin", "kubectl"))
	if len(kubectl) == 0 {
		t.Fatal("no kubectl artifact (make deps)")
	}
	return kubectl[0]
}

// kcPath is the cluster's kubeconfig.
func kcPath(dataDir string) string { return filepath.Join(dataDir, "clusters", "rack", "kubeconfig") }

// bootFiles are the boot files dnsmasq's log says it sent to mac: its
// lines carry the transaction ID, and the MAC only on some.
func bootFiles(t *testing.T, log, mac string) []string {
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	xids := map[string]bool{}
	lines := strings.Split(string(data), "\n")
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 4 && strings.Contains(l, " "+mac) {
			xids[f[4]] = true // "Dec  5 15:12:08 dnsmasq-dhcp[696]: XID ..."
		}
	}
	var files []string
	for _, l := range lines {
		if f := strings.Fields(l); len(f) > 4 && xids[f[4]] && strings.Contains(l, "option: 67 bootfile-name") {
			files = append(files, f[len(f)-1])
		}
	}
	return files
}

// installs is when each machine's install was first seen in up's log.
type installs struct {
	mu sync.Mutex
	m  map[string]time.Time
}

// has says whether every one of names is installed.
func (i *installs) has(names ...string) bool {
	for _, n := range names {
		if _, ok := i.at(n); !ok {
			return false
		}
	}
	return true
}

func (i *installs) at(name string) (time.Time, bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	t, ok := i.m[name]
	return t, ok
}

// watchInstalls notes, every second until ctx ends, which machines up's
// log says are installed ("NAME: installed to").
func watchInstalls(ctx context.Context, file string) *installs {
	i := &installs{m: map[string]time.Time{}}
	go func() {
		for ctx.Err() == nil {
			if data, err := os.ReadFile(file); err == nil {
				now := time.Now()
				i.mu.Lock()
				for _, line := range strings.Split(string(data), "\n") {
					if f := strings.Fields(line); len(f) >= 5 && f[0] == "metal" && f[3] == "installed" && f[4] == "to" {
						name := strings.TrimSuffix(f[2], ":")
						if _, seen := i.m[name]; !seen {
							i.m[name] = now
						}
					}
				}
				i.mu.Unlock()
			}
			time.Sleep(time.Second)
		}
	}()
	return i
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
