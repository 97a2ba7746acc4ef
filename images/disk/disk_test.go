package disk

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
	for _, f := range []string{SystemdBootEFI, GPTMBR} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (make deps installs systemd-boot-efi and syslinux-common)", f)
		}
	}
}

// A small tree becomes a GPT disk whose partitions, labels, boot loaders
// and files are what the real tools read back.
func TestBuildSmallDisk(t *testing.T) {
	need(t, "mkfs.ext4", "mkfs.vfat", "mmd", "mcopy", "mdir", "mtype", "syslinux", "sgdisk", "debugfs")
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "hello"), []byte("kubeup\n"), 0o644)
	kernel := filepath.Join(dir, "vmlinuz")
	initrd := filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("not a kernel"), 0o644)
	os.WriteFile(initrd, []byte("not an initrd"), 0o644)
	out := filepath.Join(dir, "disk.raw")
	res, err := Build(context.Background(), out, Options{Root: root, Boot: Boot{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"},
		ESPSize: 40 << 20, Slack: 8 << 20, WorkDir: dir, SourceDateEpoch: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(out)
	if fi.Size() != (1<<20)+res.ESPSize+res.RootSize+(1<<20) {
		t.Errorf("disk size %d", fi.Size())
	}
	p, err := exec.Command("sgdisk", "-p", out).CombinedOutput()
	if err != nil {
		t.Fatalf("sgdisk -p: %v\n%s", err, p)
	}
	for _, want := range []string{"EF00  ESP", "8304  root"} {
		if !strings.Contains(string(p), want) {
			t.Errorf("partition table lacks %q:\n%s", want, p)
		}
	}
	attrs, _ := exec.Command("sgdisk", "-A", "1:show", out).CombinedOutput()
	if !strings.Contains(string(attrs), "legacy BIOS bootable") {
		t.Errorf("ESP is not legacy-BIOS-bootable: %s", attrs)
	}
	esp := out + "@@1M"
	list, err := exec.Command("mdir", "-i", esp, "-/", "-a", "-b", "::/").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v\n%s", err, list)
	}
	for _, want := range []string{"::/EFI/BOOT/BOOTX64.EFI", "::/vmlinuz", "::/initrd.img", "::/syslinux/ldlinux.sys", "::/loader/entries/kubeup.conf"} {
		if !strings.Contains(string(list), want) {
			t.Errorf("ESP lacks %s:\n%s", want, list)
		}
	}
	entry, _ := exec.Command("mtype", "-i", esp, "::/loader/entries/kubeup.conf").CombinedOutput()
	if !strings.Contains(string(entry), "options root=LABEL=kubeup-root ro console=ttyS0") {
		t.Errorf("boot entry:\n%s", entry)
	}
	// The root filesystem carries the tree and the label.
	rootImg := filepath.Join(dir, "root.ext4")
	cat, err := exec.Command("debugfs", "-R", "cat /etc/hello", rootImg).Output()
	if err != nil || string(cat) != "kubeup\n" {
		t.Errorf("debugfs cat: %q %v", cat, err)
	}
	label, _ := exec.Command("blkid", "-o", "value", "-s", "LABEL", rootImg).Output()
	if strings.TrimSpace(string(label)) != RootLabel {
		t.Errorf("root label %q", label)
	}
	// The MBR boots SYSLINUX's GPT loader.
	mbr, _ := os.ReadFile(GPTMBR)
	disk, _ := os.ReadFile(out)
	if string(disk[:64]) != string(mbr[:64]) {
		t.Error("protective MBR does not hold gptmbr.bin")
	}
}

func TestConvertUnknownFormat(t *testing.T) {
	err := Convert(context.Background(), "x", "vhd", "y", 0)
	if err == nil || !strings.Contains(err.Error(), `unknown image format "vhd"`) {
		t.Errorf("err = %v", err)
	}
}
