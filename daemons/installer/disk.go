package installer

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// skipDisks are block devices that are never an install target.
var skipDisks = []string{"loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd", "mmcblk0boot", "mmcblk0rpmb"}

// ChooseDisk returns the disk to install to: want when set (it must be a
// disk, not a partition), else the first disk in /sys/block (sysBlock)
// that is not removable, not read-only and not empty, by name (vda before
// vdb, nvme0n1 before sda: the order is the kernel's names', so write
// spec.target.metal.machines[].disk on a machine with several disks).
func ChooseDisk(sysBlock, devDir, want string) (string, error) {
	if want != "" {
		real, err := filepath.EvalSymlinks(want)
		if err != nil {
			return "", fmt.Errorf("disk %s: %w", want, err)
		}
		name := filepath.Base(real)
		if _, err := os.Stat(filepath.Join(sysBlock, name)); err != nil {
			return "", fmt.Errorf("disk %s (%s) is not a whole disk in %s", want, name, sysBlock)
		}
		return filepath.Join(devDir, name), nil
	}
	entries, err := os.ReadDir(sysBlock)
	if err != nil {
		return "", err
	}
	var names []string
	var seen []string
next:
	for _, e := range entries {
		n := e.Name()
		for _, p := range skipDisks {
			if strings.HasPrefix(n, p) {
				continue next
			}
		}
		removable := readInt(filepath.Join(sysBlock, n, "removable"))
		ro := readInt(filepath.Join(sysBlock, n, "ro"))
		size := readInt(filepath.Join(sysBlock, n, "size"))
		seen = append(seen, fmt.Sprintf("%s (removable %d, ro %d, %d sectors)", n, removable, ro, size))
		if removable == 0 && ro == 0 && size > 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("no disk to install to: none of %v is fixed, writable and not empty", seen)
	}
	sort.Strings(names)
	return filepath.Join(devDir, names[0]), nil
}

func readInt(path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1
	}
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}

// PartitionDevice is the device of a disk's partition n: sda → sda2,
// nvme0n1 → nvme0n1p2 (names ending in a digit take a "p").
func PartitionDevice(disk string, n int) string {
	if last := disk[len(disk)-1]; last >= '0' && last <= '9' {
		return disk + "p" + strconv.Itoa(n)
	}
	return disk + strconv.Itoa(n)
}
