package disk

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckWritableDisk(t *testing.T) {
	file := filepath.Join(t.TempDir(), "disk.raw")
	os.WriteFile(file, make([]byte, 4<<20), 0o644)
	if _, err := CheckWritableDisk(file, "/sys", "/proc/self/mountinfo", "/proc/swaps"); err == nil || !strings.Contains(err.Error(), "not a block device") {
		t.Errorf("a file: %v", err)
	}
	// The disk holding / is refused, whatever its name.
	root, err := exec.Command("findmnt", "-n", "-o", "SOURCE", "/").Output()
	if src := strings.TrimSpace(string(root)); err == nil && strings.HasPrefix(src, "/dev/") {
		disk := src
		if pk, err := exec.Command("lsblk", "-n", "-o", "PKNAME", src).Output(); err == nil && strings.TrimSpace(string(pk)) != "" {
			disk = "/dev/" + strings.TrimSpace(string(pk))
		}
		if _, err := CheckWritableDisk(disk, "/sys", "/proc/self/mountinfo", "/proc/swaps"); err == nil || !(strings.Contains(err.Error(), "this host's own disk") || strings.Contains(err.Error(), "is in use")) {
			t.Errorf("the host's disk %s: %v", disk, err)
		}
	}
	if os.Geteuid() != 0 || testing.Short() {
		return
	}
	// A loop device is writable until a filesystem on it is mounted.
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup not installed")
	}
	img := filepath.Join(t.TempDir(), "loop.raw")
	os.WriteFile(img, make([]byte, 32<<20), 0o644)
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Skipf("no loop device here: %v", err)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", loop).Run() })
	d, err := CheckWritableDisk(loop, "/sys", "/proc/self/mountinfo", "/proc/swaps")
	if err != nil || d.Bytes != 32<<20 {
		t.Fatalf("an unused loop device: %+v %v", d, err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", loop).CombinedOutput(); err != nil {
		t.Fatalf("mkfs: %v %s", err, out)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", loop, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot mount here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", mnt).Run() })
	if _, err := CheckWritableDisk(loop, "/sys", "/proc/self/mountinfo", "/proc/swaps"); err == nil || !strings.Contains(err.Error(), "is mounted on "+mnt) {
		t.Errorf("a mounted loop device: %v", err)
	}
}
