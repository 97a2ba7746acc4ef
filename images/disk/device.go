package disk

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Device describes a block device about to be overwritten.
type Device struct {
	Path  string
	Name  string // in /sys/class/block
	Bytes int64
	Model string
}

func (d Device) String() string {
	s := fmt.Sprintf("%s (%.1f GiB", d.Path, float64(d.Bytes)/(1<<30))
	if d.Model != "" {
		s += ", " + d.Model
	}
	return s + ")"
}

// CheckWritableDisk refuses to let a whole disk be overwritten when it is
// not a whole-disk block device, when it or one of its partitions is
// mounted, used as swap or held by device-mapper or RAID, or when it holds
// this host's root filesystem. sysDir is /sys and mountinfo
// /proc/self/mountinfo (tests point them elsewhere).
func CheckWritableDisk(path, sysDir, mountinfo, swaps string) (Device, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return Device{}, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return Device{}, fmt.Errorf("%s is not a block device (write a file with --out)", path)
	}
	maj, min := unix.Major(st.Rdev), unix.Minor(st.Rdev)
	sys, err := filepath.EvalSymlinks(filepath.Join(sysDir, "dev", "block", fmt.Sprintf("%d:%d", maj, min)))
	if err != nil {
		return Device{}, fmt.Errorf("%s: %w", path, err)
	}
	d := Device{Path: path, Name: filepath.Base(sys)}
	if _, err := os.Stat(filepath.Join(sys, "partition")); err == nil {
		return d, fmt.Errorf("%s is a partition: name the whole disk", path)
	}
	d.Bytes = readInt64(filepath.Join(sys, "size")) * 512
	if b, err := os.ReadFile(filepath.Join(sys, "device", "model")); err == nil {
		d.Model = strings.TrimSpace(string(b))
	}
	// The disk and its partitions, by major:minor and by name.
	ids := map[string]string{fmt.Sprintf("%d:%d", maj, min): d.Name}
	names := []string{d.Name}
	entries, _ := os.ReadDir(sys)
	for _, e := range entries {
		if dev, err := os.ReadFile(filepath.Join(sys, e.Name(), "dev")); err == nil {
			if _, err := os.Stat(filepath.Join(sys, e.Name(), "partition")); err == nil {
				ids[strings.TrimSpace(string(dev))] = e.Name()
				names = append(names, e.Name())
			}
		}
	}
	for _, n := range names {
		holders, _ := os.ReadDir(filepath.Join(sysDir, "class", "block", n, "holders"))
		if len(holders) > 0 {
			return d, fmt.Errorf("%s is in use: %s is held by %s (device-mapper, LVM or RAID)", path, n, holders[0].Name())
		}
	}
	f, err := os.Open(mountinfo)
	if err != nil {
		return d, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		if n, ok := ids[fields[2]]; ok {
			if fields[4] == "/" {
				return d, fmt.Errorf("%s is this host's own disk (%s holds the root filesystem)", path, n)
			}
			return d, fmt.Errorf("%s is in use: %s is mounted on %s", path, n, fields[4])
		}
	}
	if b, err := os.ReadFile(swaps); err == nil {
		for _, line := range strings.Split(string(b), "\n")[1:] {
			if fs := strings.Fields(line); len(fs) > 0 {
				for _, n := range names {
					if filepath.Base(fs[0]) == n {
						return d, fmt.Errorf("%s is in use: %s is swap", path, n)
					}
				}
			}
		}
	}
	return d, nil
}

func readInt64(path string) int64 {
	var n int64
	b, err := os.ReadFile(path)
	if err == nil {
		fmt.Sscan(strings.TrimSpace(string(b)), &n)
	}
	return n
}

// CopySparse copies src to a new file dst, leaving the zero blocks of src
// as holes (a disk image of a few GiB takes what it holds).
func CopySparse(src, dst string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if err := truncate(dst, fi.Size()); err != nil {
		return err
	}
	f, err := os.OpenFile(dst, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	if err := copyInto(f, src, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
