package metal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"

	"kubeup.dev/kubeup/images/disk"
)

// A role's assets: the kernel, the image's initrd with the installer
// appended as a cpio archive the kernel reads, and the image compressed,
// whose size and sha256 are the raw image's; a second call is cached.
func TestPrepareAssets(t *testing.T) {
	for _, tool := range []string{"mkfs.ext4", "mkfs.vfat", "mmd", "mcopy", "mtype", "syslinux", "sgdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it)", tool)
		}
	}
	for _, f := range []string{disk.SystemdBootEFI, disk.GPTMBR} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s missing (make deps installs it)", f)
		}
	}
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "hostname"), []byte("x\n"), 0o644)
	kernel, initrd := filepath.Join(dir, "vmlinuz"), filepath.Join(dir, "initrd")
	os.WriteFile(kernel, []byte("a kernel"), 0o644)
	os.WriteFile(initrd, []byte("an initrd"), 0o644) // 9 bytes: padded to 12
	raw := filepath.Join(dir, "disk.raw")
	if _, err := disk.Build(context.Background(), raw, disk.Options{Root: root, Boot: disk.Boot{Kernel: kernel, Initrd: initrd, Cmdline: "console=ttyS0"},
		ESPSize: 40 << 20, Slack: 8 << 20, WorkDir: dir, SourceDateEpoch: 1700000000}); err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(dir, "kubeup-installer")
	os.WriteFile(inst, []byte("\x7fELF installer"), 0o755)
	cache := filepath.Join(dir, "cache")
	var progress bytes.Buffer
	a, err := PrepareAssets(context.Background(), cache, raw, inst, &progress)
	if err != nil {
		t.Fatal(err)
	}
	if a.Cmdline != "root=LABEL=kubeup-root ro console=ttyS0" {
		t.Errorf("cmdline %q", a.Cmdline)
	}
	if k, _ := os.ReadFile(a.Kernel); string(k) != "a kernel" {
		t.Errorf("kernel %q", k)
	}
	rd, _ := os.ReadFile(a.Initrd)
	if !bytes.HasPrefix(rd, []byte("an initrd\x00\x00\x00")) {
		t.Fatalf("initrd does not start with the image's, padded to 4 bytes: %q", rd[:min(16, len(rd))])
	}
	r := cpio.NewReader(bytes.NewReader(rd[12:]))
	h, err := r.Next()
	if err != nil || h.Name != InstallerName || h.Mode.Perm() != 0o755 {
		t.Fatalf("appended archive: %+v %v", h, err)
	}
	if b, _ := io.ReadAll(r); string(b) != "\x7fELF installer" {
		t.Errorf("installer in the archive: %q", b)
	}
	zf, _ := os.Open(a.Image)
	defer zf.Close()
	zr, err := zstd.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	h2 := sha256.New()
	n, err := io.Copy(h2, zr)
	fi, _ := os.Stat(raw)
	if err != nil || n != fi.Size() || n != a.Size || hex.EncodeToString(h2.Sum(nil)) != a.SHA256 {
		t.Errorf("image: %d bytes (%v), size %d, raw %d, sha256 %s vs %s", n, err, a.Size, fi.Size(), hex.EncodeToString(h2.Sum(nil)), a.SHA256)
	}
	if !bytes.Contains(progress.Bytes(), []byte("network boot assets of disk.raw")) {
		t.Errorf("progress %q", progress.String())
	}
	progress.Reset()
	again, err := PrepareAssets(context.Background(), cache, raw, inst, &progress)
	if err != nil || *again != *a || progress.Len() != 0 {
		t.Errorf("second call not from the cache: %+v %v %q", again, err, progress.String())
	}
}
