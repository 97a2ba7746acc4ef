package disk

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// smallDisk builds a disk from a tiny tree (and fake kernel and initrd).
func smallDisk(t *testing.T) string {
	t.Helper()
	need(t, "mkfs.ext4", "mkfs.vfat", "mmd", "mcopy", "mtype", "syslinux", "sgdisk", "debugfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "var", "lib", "cloud"), 0o755)
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("a kernel"), 0o644)
	os.WriteFile(initrd, []byte("an initrd"), 0o644)
	out := filepath.Join(dir, "disk.raw")
	if _, err := Build(context.Background(), out, Options{Root: root, Boot: Boot{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"},
		ESPSize: 40 << 20, Slack: 8 << 20, WorkDir: dir, SourceDateEpoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The seed lands in SeedDir on the root filesystem, root's and private,
// and a second seed replaces the first.
func TestWriteSeed(t *testing.T) {
	disk := smallDisk(t)
	ctx := context.Background()
	first := map[string][]byte{"meta-data": []byte("instance-id: a\n"), "user-data": []byte("#cloud-config\nhostname: a\n"), "network-config": []byte("version: 2\n")}
	if err := WriteSeed(ctx, disk, first); err != nil {
		t.Fatal(err)
	}
	second := map[string][]byte{"meta-data": []byte("instance-id: b\n"), "user-data": []byte("#cloud-config\nhostname: b-longer\n")}
	if err := WriteSeed(ctx, disk, second); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"meta-data": "instance-id: b\n", "user-data": "#cloud-config\nhostname: b-longer\n", "network-config": "version: 2\n"} {
		got, err := ReadFile(ctx, disk, SeedDir+"/"+name)
		if err != nil || string(got) != want {
			t.Errorf("%s: %q, %v; want %q", name, got, err, want)
		}
	}
	off, _, err := RootPartition(disk)
	if err != nil {
		t.Fatal(err)
	}
	fs := disk + "?offset=" + itoa(off)
	for p, mode := range map[string]string{SeedDir: "0700", SeedDir + "/user-data": "0600"} {
		stat, err := exec.Command("debugfs", "-R", "stat "+p, fs).Output()
		if err != nil || !strings.Contains(string(stat), "Mode:  "+mode) || !strings.Contains(string(stat), "User:     0   Group:     0") {
			t.Errorf("%s: want mode %s, root's:\n%s %v", p, mode, firstLines(string(stat), 3), err)
		}
	}
	if _, err := ReadFile(ctx, disk, "/nonexistent"); err == nil {
		t.Error("reading a missing file did not fail")
	}
	if err := WriteSeed(ctx, disk, map[string][]byte{"vendor-data": nil}); err == nil || !strings.Contains(err.Error(), `"vendor-data" is not one of`) {
		t.Errorf("an unknown seed file: %v", err)
	}
	notDisk := filepath.Join(t.TempDir(), "x")
	os.WriteFile(notDisk, make([]byte, 1<<20), 0o644)
	if err := WriteSeed(ctx, notDisk, first); err == nil || !strings.Contains(err.Error(), "no GPT partition table") {
		t.Errorf("a file without a partition table: %v", err)
	}
}

// The network boot's kernel, initrd and command line come from the disk.
func TestExtractBoot(t *testing.T) {
	disk := smallDisk(t)
	dir := t.TempDir()
	k, i := filepath.Join(dir, "k"), filepath.Join(dir, "i")
	cmdline, err := ExtractBoot(context.Background(), disk, k, i)
	if err != nil {
		t.Fatal(err)
	}
	if cmdline != "root=LABEL=kubeup-root ro console=ttyS0" {
		t.Errorf("cmdline %q", cmdline)
	}
	for f, want := range map[string]string{k: "a kernel", i: "an initrd"} {
		if got, _ := os.ReadFile(f); string(got) != want {
			t.Errorf("%s: %q", f, got)
		}
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	return strings.Join(lines[:min(n, len(lines))], "\n")
}
