package installer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/klauspost/compress/zstd"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"kubeup.dev/kubeup/images/disk"
)

// attempts of the download and write before the installer gives up.
const attempts = 3

// Main is the installer as the initramfs's init: it sets up the early
// system, installs, and reboots. It never returns: on failure it says why
// on the console (and to the server when it can) and reboots after a
// pause, so that the machine network-boots and tries again.
func Main() {
	earlySystem()
	log := func(format string, a ...any) {
		fmt.Fprintf(os.Stdout, "kubeup-installer: "+format+"\n", a...)
	}
	err := install(context.Background(), log)
	if err != nil {
		log("FAILED: %v", err)
		log("rebooting in 60 s to try again (the machine boots from the network while its disk is unbootable)")
		time.Sleep(60 * time.Second)
	}
	unix.Sync()
	_ = unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	select {}
}

// earlySystem mounts what a Linux system needs before anything else and
// points the standard streams at the console.
func earlySystem() {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "/proc", "proc"}, {"sysfs", "/sys", "sysfs"}, {"devtmpfs", "/dev", "devtmpfs"},
		{"tmpfs", "/run", "tmpfs"}, {"tmpfs", "/tmp", "tmpfs"},
	} {
		_ = os.MkdirAll(m.dst, 0o755)
		_ = unix.Mount(m.src, m.dst, m.fstype, 0, "")
	}
	if c, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for _, fd := range []int{0, 1, 2} {
			_ = unix.Dup2(int(c.Fd()), fd)
		}
	}
}

func install(ctx context.Context, log func(string, ...any)) error {
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return err
	}
	p, err := ParseCmdline(string(cmdline))
	if err != nil {
		return err
	}
	log("installing %s from %s", p.Machine, p.Server)
	loadModules(log)
	if err := configureNetwork(p, log); err != nil {
		return err
	}
	c := &Client{P: p, HTTP: &http.Client{Transport: &http.Transport{Proxy: nil, ResponseHeaderTimeout: 30 * time.Second}}}
	report := func(r Report) {
		if err := c.Report(ctx, r); err != nil {
			log("report %s: %v", r.Event, err)
		}
	}
	fail := func(err error) error {
		report(Report{Event: EventFailed, Detail: err.Error()})
		return err
	}

	var dev string
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(time.Second) {
		if dev, err = ChooseDisk("/sys/block", "/dev", p.Disk); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		return fail(err)
	}
	log("installing to %s", dev)
	report(Report{Event: EventStarted, Detail: dev, Total: p.Size})
	for i := 1; ; i++ {
		err = writeImage(ctx, c, p, dev, func(n int64) { report(Report{Event: EventWriting, Written: n, Total: p.Size}) })
		if err == nil || i == attempts {
			break
		}
		log("attempt %d of %d: %v", i, attempts, err)
	}
	if err != nil {
		return fail(err)
	}
	report(Report{Event: EventWritten, Detail: dev, Written: p.Size, Total: p.Size})
	seed, err := c.Seed(ctx, disk.SeedFiles)
	if err != nil {
		return fail(fmt.Errorf("fetch the seed: %w", err))
	}
	if err := writeSeed(dev, seed); err != nil {
		return fail(err)
	}
	log("installed: rebooting into %s", dev)
	report(Report{Event: EventInstalled, Detail: dev})
	return nil
}

// loadModules loads the drivers of every device the kernel has found (as
// udev would: modprobe by each device's modalias), a few rounds because
// buses bring new devices, then ext4.
func loadModules(log func(string, ...any)) {
	modprobe := ""
	for _, p := range []string{"/usr/sbin/modprobe", "/sbin/modprobe", "/usr/bin/modprobe", "/bin/modprobe"} {
		if _, err := os.Stat(p); err == nil {
			modprobe = p
			break
		}
	}
	if modprobe == "" {
		log("no modprobe in the initrd: using built-in drivers only")
		return
	}
	seen := map[string]bool{}
	for round := 0; round < 4; round++ {
		var aliases []string
		_ = filepath.WalkDir("/sys/devices", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || d.Name() != "modalias" {
				return nil
			}
			b, err := os.ReadFile(path)
			if a := strings.TrimSpace(string(b)); err == nil && a != "" && !seen[a] {
				seen[a] = true
				aliases = append(aliases, a)
			}
			return nil
		})
		for len(aliases) > 0 {
			n := min(len(aliases), 64)
			_ = exec.Command(modprobe, append([]string{"-a", "-b", "-q"}, aliases[:n]...)...).Run()
			aliases = aliases[n:]
		}
		time.Sleep(500 * time.Millisecond)
	}
	if out, err := exec.Command(modprobe, "-a", "ext4", "af_packet").CombinedOutput(); err != nil {
		log("modprobe ext4: %v %s", err, strings.TrimSpace(string(out)))
	}
}

// configureNetwork brings up the interface with the MAC it booted from,
// with its address and default route.
func configureNetwork(p *Params, log func(string, ...any)) error {
	var link netlink.Link
	for deadline := time.Now().Add(60 * time.Second); link == nil; time.Sleep(500 * time.Millisecond) {
		links, _ := netlink.LinkList()
		for _, l := range links {
			if strings.EqualFold(l.Attrs().HardwareAddr.String(), p.MAC.String()) {
				link = l
			}
		}
		if link == nil && time.Now().After(deadline) {
			return fmt.Errorf("no network interface with MAC %s (its driver may be missing from the initrd)", p.MAC)
		}
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil {
		_ = netlink.LinkSetUp(lo)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", link.Attrs().Name, err)
	}
	addr := &netlink.Addr{IPNet: &net.IPNet{IP: p.Address.Addr().AsSlice(), Mask: net.CIDRMask(p.Address.Bits(), 32)}}
	if err := netlink.AddrReplace(link, addr); err != nil {
		return fmt.Errorf("address %s on %s: %w", p.Address, link.Attrs().Name, err)
	}
	if p.Gateway.IsValid() {
		r := &netlink.Route{LinkIndex: link.Attrs().Index, Gw: p.Gateway.AsSlice()}
		if err := netlink.RouteReplace(r); err != nil {
			return fmt.Errorf("default route via %s: %w", p.Gateway, err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		if l, err := netlink.LinkByIndex(link.Attrs().Index); err == nil && l.Attrs().OperState == netlink.OperUp {
			break
		}
	}
	log("%s (%s) has %s", link.Attrs().Name, p.MAC, p.Address)
	return nil
}

// writeImage streams the compressed image from the server to dev.
func writeImage(ctx context.Context, c *Client, p *Params, dev string, progress Progress) error {
	resp, err := c.Get(ctx, p.URL(p.Image))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	zr, err := zstd.NewReader(resp.Body, zstd.WithDecoderConcurrency(1))
	if err != nil {
		return err
	}
	defer zr.Close()
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return WriteImage(f, io.Reader(zr), p.Size, p.SHA256, 5*time.Second, progress)
}

// writeSeed re-reads dev's partition table, mounts its root partition and
// writes the seed where cloud-init's NoCloud datasource looks.
func writeSeed(dev string, seed map[string][]byte) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	table, err := gpt.Read(f, 512, 512)
	if err == nil {
		_, err = unix.IoctlGetInt(int(f.Fd()), unix.BLKRRPART)
		if errors.Is(err, unix.ENOTTY) {
			err = nil
		}
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	index := 0
	for _, part := range table.Partitions {
		if strings.EqualFold(string(part.Type), disk.RootType) {
			index = part.Index
		}
	}
	if index == 0 {
		return fmt.Errorf("%s: no root partition after the write", dev)
	}
	root := PartitionDevice(dev, index)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(250 * time.Millisecond) {
		if _, err := os.Stat(root); err == nil {
			break
		} else if time.Now().After(deadline) {
			return fmt.Errorf("%s did not appear after re-reading the partition table", root)
		}
	}
	mnt := "/run/kubeup-root"
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		return err
	}
	if err := unix.Mount(root, mnt, "ext4", 0, ""); err != nil {
		return fmt.Errorf("mount %s: %w", root, err)
	}
	werr := writeSeedFiles(filepath.Join(mnt, disk.SeedDir), seed)
	unix.Sync()
	if err := unix.Unmount(mnt, 0); err != nil && werr == nil {
		werr = fmt.Errorf("unmount %s: %w", root, err)
	}
	return werr
}

func writeSeedFiles(dir string, seed map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	for name, data := range seed {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}
