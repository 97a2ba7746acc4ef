package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/systemd"
)

// UnitFileMode is the mode of the units Configure installs.
const UnitFileMode = 0o600

// RootLabel is the root filesystem label fstab and the kernel command line
// name (kept equal to disk.RootLabel by a test).
const RootLabel = "kubeup-root"

// Appliance is what makes a Debian root a kubeup role image.
type Appliance struct {
	Role components.Role
	// Units are installed into /etc/systemd/system; Target is enabled.
	Units  []systemd.Unit
	Target string
	// Files are installed as given (role static files, manifests, ...).
	Files []components.File
}

// systemFiles are the appliance's own settings, the same for every role.
func systemFiles() []components.File {
	return []components.File{
		{Path: "/etc/fstab", Mode: 0o644, Content: []byte("# kubeup appliance: the root filesystem, found by label.\nLABEL=" + RootLabel + " / ext4 defaults,errors=remount-ro 0 1\n")},
		// Empty: every machine generates its own machine-id on first boot.
		{Path: "/etc/machine-id", Mode: 0o444, Content: nil},
		{Path: "/etc/hostname", Mode: 0o644, Content: []byte("localhost\n")},
		{Path: "/etc/cloud/cloud.cfg.d/90-kubeup.cfg", Mode: 0o644, Content: []byte(`# kubeup: where machines get their user-data. NoCloud for local VMs and bare
# metal (a seed volume labelled cidata), the clouds' metadata services elsewhere.
datasource_list: [NoCloud, ConfigDrive, Ec2, GCE, None]
# Images are complete; nothing is installed at boot.
package_update: false
package_upgrade: false
# Host keys without RSA, whose generation takes seconds under emulation and
# delays every component (they start after cloud-init's network stage).
ssh_genkeytypes: [ed25519, ecdsa]
# Debian's module lists without what an appliance never runs: GRUB (it boots
# by systemd-boot or SYSLINUX), apt, snaps, byobu, configuration-management
# agents, host keys printed to the console, and locale (the appliance runs
# in C.UTF-8, built into glibc, and ships no locales). Each is Python work that
# competes with the control plane starting up.
cloud_config_modules: [ssh-import-id, keyboard, set-passwords, ntp, timezone, disable-ec2-metadata, runcmd]
cloud_final_modules: [write-files-deferred, scripts-vendor, scripts-per-once, scripts-per-boot,
  scripts-per-instance, scripts-user, ssh-authkey-fingerprints, install-hotplug, phone-home,
  final-message, power-state-change]
`)},
		{Path: "/etc/systemd/journald.conf.d/90-kubeup.conf", Mode: 0o644, Content: []byte(`# kubeup: keep the journal across reboots, bounded, and never drop a burst
# (the node agent forwards every line to the cluster's log store).
[Journal]
Storage=persistent
SystemMaxUse=256M
RateLimitIntervalSec=0
`)},
		{Path: "/etc/systemd/resolved.conf.d/90-kubeup.conf", Mode: 0o644, Content: []byte(`# kubeup: names resolve through the configured DNS servers only. LLMNR and
# multicast DNS would answer for (and listen on 5355 and 5353 of) every
# network an appliance is on, which nothing here uses.
[Resolve]
LLMNR=no
MulticastDNS=no
`)},
		{Path: "/etc/systemd/system.conf.d/90-kubeup.conf", Mode: 0o644, Content: []byte(`# kubeup: account resources of every unit.
[Manager]
DefaultCPUAccounting=yes
DefaultMemoryAccounting=yes
DefaultIOAccounting=yes
DefaultTasksAccounting=yes
DefaultTimeoutStopSec=30s
`)},
	}
}

// enabled are units enabled in every image (name → the target wanting it);
// masked are units an appliance must not run. e2scrub (e2fsprogs) checks
// ext4 filesystems on LVM, which the images do not use: it found nothing
// to do, but e2scrub_reap.service starts at every boot in a network
// namespace of its own (PrivateNetwork), and on a starved 1-vCPU master
// (3 masters under TCG) its setup_net held the kernel's pernet lock for 20
// minutes, blocking modprobe, and through it the boot.
var (
	enabled = map[string]string{
		"systemd-networkd.service": "multi-user.target",
		"systemd-resolved.service": "multi-user.target",
	}
	masked = []string{"apt-daily.timer", "apt-daily-upgrade.timer", "apt-daily.service", "apt-daily-upgrade.service",
		"e2scrub_all.timer", "e2scrub_all.service", "e2scrub_reap.service"}
	// disabled are the links by which packages enable units that only some
	// machines run: sshd starts only where the user-data asks for it
	// (spec.ssh.authorizedKeys, provision/render), so that a machine
	// nobody may log in to has no port 22 open.
	disabled = []string{"multi-user.target.wants/ssh.service", "sshd.service"}
)

// Configure turns a trimmed Debian root into the role's appliance.
func Configure(root string, a Appliance) error {
	files := append(systemFiles(), a.Files...)
	for _, u := range a.Units {
		data, err := u.Bytes()
		if err != nil {
			return err
		}
		// 0600: only systemd reads them (CIS 1.1.1, 4.1.1 on unit files).
		files = append(files, components.File{Path: "/etc/systemd/system/" + u.Name, Mode: UnitFileMode, Content: data})
	}
	for _, f := range files {
		if err := writeFile(root, f); err != nil {
			return err
		}
	}
	// Host keys are made per machine on first boot (cloud-init's ssh module).
	keys, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*"))
	for _, k := range keys {
		if err := os.Remove(k); err != nil {
			return err
		}
	}
	_ = os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))
	if err := symlink(root, "/etc/resolv.conf", "../run/systemd/resolve/stub-resolv.conf"); err != nil {
		return err
	}
	for unit, wantedBy := range enabled {
		if err := enable(root, unit, wantedBy); err != nil {
			return err
		}
	}
	if a.Target != "" {
		if err := enable(root, a.Target, "multi-user.target"); err != nil {
			return err
		}
	}
	for _, m := range masked {
		if err := symlink(root, "/etc/systemd/system/"+m, "/dev/null"); err != nil {
			return err
		}
	}
	for _, d := range disabled {
		if err := os.Remove(filepath.Join(root, "etc/systemd/system", d)); err != nil && !os.IsNotExist(err) {
			return err
		}
	}
	return nil
}

// enable does what `systemctl enable` does for a unit with WantedBy=.
func enable(root, unit, wantedBy string) error {
	target := "/etc/systemd/system/" + unit
	if _, err := os.Stat(filepath.Join(root, target)); err != nil {
		target = "/lib/systemd/system/" + unit
		if _, err := os.Stat(filepath.Join(root, target)); err != nil {
			return fmt.Errorf("enable %s: unit not found in the image", unit)
		}
	}
	return symlink(root, "/etc/systemd/system/"+wantedBy+".wants/"+unit, target)
}

func symlink(root, path, target string) error {
	p := filepath.Join(root, path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		return err
	}
	return os.Symlink(target, p)
}

func writeFile(root string, f components.File) error {
	if !strings.HasPrefix(f.Path, "/") {
		return fmt.Errorf("image file %q: path must be absolute", f.Path)
	}
	p := filepath.Join(root, f.Path)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	_ = os.Remove(p)
	if err := os.WriteFile(p, f.Content, fs.FileMode(f.Mode)); err != nil {
		return err
	}
	return os.Chmod(p, f.Mode) // not subject to umask
}

// CopyTree copies src into root (owners root, modes and symlinks kept): how
// artifacts, laid out as they install, go into the image.
func CopyTree(src, root string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if rel == "." {
			return nil
		}
		dst := filepath.Join(root, rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case info.Mode()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			_ = os.Remove(dst)
			return os.Symlink(t, dst)
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			return writeFile(root, components.File{Path: "/" + filepath.ToSlash(rel), Mode: info.Mode().Perm(), Content: data})
		}
		return nil
	})
}

// RecipeVersion changes when Trim or Configure change behaviour in a way
// RecipeHash cannot see (code rather than data).
const RecipeVersion = 2

// RecipeHash covers everything Trim and Configure put into or take out of
// an image, so that a role image is rebuilt when the appliance recipe changes.
func RecipeHash() string {
	h := sha256.New()
	fmt.Fprintf(h, "recipe %d\n", RecipeVersion)
	for _, f := range systemFiles() {
		fmt.Fprintf(h, "file %s %o %x\n", f.Path, f.Mode, sha256.Sum256(f.Content))
	}
	for _, u := range slices.Sorted(maps.Keys(enabled)) {
		fmt.Fprintf(h, "enable %s %s\n", u, enabled[u])
	}
	fmt.Fprintf(h, "mask %s\ndisable %s\nmodules %s\n", strings.Join(masked, ","), strings.Join(disabled, ","), strings.Join(unusedModules, ","))
	return hex.EncodeToString(h.Sum(nil))
}
