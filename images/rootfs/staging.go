package rootfs

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Unpack extracts the base layer into dir (which must be empty or absent),
// keeping owners, modes, device nodes and extended attributes.
func Unpack(ctx context.Context, b *Base, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "tar", "--numeric-owner", "--xattrs", "--xattrs-include=*", "-xpf", b.Tar, "-C", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("unpack %s: %w\n%s", b.Tar, err, out)
	}
	return nil
}

// Removed is what Trim took out of one category.
type Removed struct {
	What  string `json:"what"`
	Files int    `json:"files"`
	Bytes int64  `json:"bytes"`
}

// Kernel module directories an appliance on virtual or server hardware
// does not need (relative to /lib/modules/<version>/kernel).
var unusedModules = []string{
	"drivers/gpu", "drivers/media", "drivers/infiniband", "drivers/isdn", "drivers/bluetooth",
	"net/wireless", "net/mac80211", "net/bluetooth", "sound",
	"fs/ocfs2", "fs/gfs2", "fs/jfs", "fs/nilfs2", "fs/f2fs", "fs/hfs", "fs/hfsplus",
	"fs/ufs", "fs/reiserfs", "fs/ntfs3", "fs/dlm", "fs/orangefs", "fs/coda",
}

// Trim removes what an appliance does not need and reports it by category.
// Copyright files stay (licences travel with the binaries).
func Trim(root string) ([]Removed, error) {
	report, err := trimRules(root)
	if err != nil {
		return nil, err
	}
	// Module dependency files must match what is left: the image's own
	// depmod, run in the image root.
	kvers, _ := filepath.Glob(filepath.Join(root, "lib/modules/*"))
	for _, kv := range kvers {
		cmd := exec.Command("chroot", root, "/usr/sbin/depmod", "-a", filepath.Base(kv))
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
		if out, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("depmod %s: %w\n%s", filepath.Base(kv), err, out)
		}
	}
	return report, nil
}

func trimRules(root string) ([]Removed, error) {
	type rule struct {
		what  string
		globs []string
		keep  func(string) bool
	}
	rules := []rule{
		{what: "documentation (/usr/share/doc, except copyright files)", globs: []string{"usr/share/doc/*"},
			keep: func(p string) bool { return filepath.Base(p) == "copyright" }},
		{what: "man and info pages", globs: []string{"usr/share/man/*", "usr/share/info/*"}},
		{what: "translations (/usr/share/locale)", globs: []string{"usr/share/locale/*"},
			keep: func(p string) bool { return filepath.Base(p) == "locale.alias" }},
		{what: "locale sources (/usr/share/i18n; C.UTF-8 is built in)", globs: []string{"usr/share/i18n"}},
		{what: "lintian overrides", globs: []string{"usr/share/lintian"}},
		{what: "kernel symbols and config in /boot (the kernel and initrd move to the EFI partition)", globs: []string{"boot/vmlinuz-*", "boot/initrd.img-*", "boot/System.map-*", "boot/config-*"}},
		{what: "apt package lists and caches", globs: []string{"var/lib/apt/lists/*", "var/cache/apt/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old"}},
		{what: "build-time logs", globs: []string{"var/log/*"}},
	}
	var mods []string
	for _, m := range unusedModules {
		mods = append(mods, "lib/modules/*/kernel/"+m)
	}
	rules = append(rules, rule{what: "kernel modules for hardware and filesystems an appliance lacks (" + strings.Join(unusedModules, ", ") + ")", globs: mods})

	var report []Removed
	for _, r := range rules {
		rm := Removed{What: r.what}
		for _, g := range r.globs {
			matches, err := filepath.Glob(filepath.Join(root, g))
			if err != nil {
				return nil, err
			}
			sort.Strings(matches)
			for _, m := range matches {
				n, size, err := removeTree(m, r.keep)
				if err != nil {
					return nil, fmt.Errorf("trim %s: %w", m, err)
				}
				rm.Files += n
				rm.Bytes += size
			}
		}
		report = append(report, rm)
	}
	return report, nil
}

// removeTree removes path (a file or a tree), except files keep accepts,
// and returns how many files and bytes it removed.
func removeTree(path string, keep func(string) bool) (int, int64, error) {
	var files int
	var size int64
	var dirs []string
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if keep != nil && keep(p) {
			return nil
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		files++
		return os.Remove(p)
	})
	if err != nil {
		return 0, 0, err
	}
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = os.Remove(dirs[i]) // only empty directories go
	}
	return files, size, nil
}

// Kernel returns the kernel and initrd of the base layer (before Trim).
func Kernel(root string) (kernel, initrd string, err error) {
	ks, _ := filepath.Glob(filepath.Join(root, "boot/vmlinuz-*"))
	is, _ := filepath.Glob(filepath.Join(root, "boot/initrd.img-*"))
	if len(ks) != 1 || len(is) != 1 {
		return "", "", fmt.Errorf("expected one kernel and one initrd in %s/boot, found %d and %d", root, len(ks), len(is))
	}
	return ks[0], is[0], nil
}

// ClampTimes sets every modification time later than epoch to epoch (as
// reproducible-builds tools do), so the filesystem built from root does not
// depend on when the build ran.
func ClampTimes(root string, epoch int64) error {
	ts := []unix.Timespec{unix.NsecToTimespec(epoch * 1e9), unix.NsecToTimespec(epoch * 1e9)}
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.ModTime().Unix() <= epoch {
			return nil
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
}
