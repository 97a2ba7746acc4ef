package metal

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/cavaliergopher/cpio"
	"github.com/klauspost/compress/zstd"

	"kubeup.dev/kubeup/images/disk"
)

// InstallerName is kubeup-installer's path in the network boot's initrd
// (the kernel starts it: rdinit=/kubeup-installer).
const InstallerName = "kubeup-installer"

// RoleAssets are what a role's machines fetch to install: the kernel, the
// initrd (the image's own, kubeup-installer appended), the compressed
// image, and the image's size, sha256 and kernel command line.
type RoleAssets struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Image   string `json:"image"` // zstd
	Size    int64  `json:"size"`  // of the uncompressed image
	SHA256  string `json:"sha256"`
	Cmdline string `json:"cmdline"` // the installed system's (root=..., console=...)
}

// PrepareAssets makes a role's assets from its raw image and the
// installer binary, in cacheDir/metal/<key>, where key is the sha256 of
// both: a second run with the same image and installer takes no time.
func PrepareAssets(ctx context.Context, cacheDir, rawImage, installer string, progress io.Writer) (*RoleAssets, error) {
	key := sha256.New()
	for _, f := range []string{rawImage, installer} {
		if err := hashFile(key, f); err != nil {
			return nil, err
		}
	}
	dir := filepath.Join(cacheDir, "metal", hex.EncodeToString(key.Sum(nil))[:32])
	manifest := filepath.Join(dir, "assets.json")
	if b, err := os.ReadFile(manifest); err == nil {
		var a RoleAssets
		if json.Unmarshal(b, &a) == nil {
			return &a, nil
		}
	}
	start := time.Now()
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".assets-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	a := &RoleAssets{Kernel: filepath.Join(dir, "vmlinuz"), Initrd: filepath.Join(dir, "initrd.img"), Image: filepath.Join(dir, "image.raw.zst")}
	roleInitrd := filepath.Join(tmp, "role-initrd")
	if a.Cmdline, err = disk.ExtractBoot(ctx, rawImage, filepath.Join(tmp, "vmlinuz"), roleInitrd); err != nil {
		return nil, err
	}
	if err := appendInstaller(roleInitrd, installer, filepath.Join(tmp, "initrd.img")); err != nil {
		return nil, err
	}
	if a.Size, a.SHA256, err = compress(ctx, rawImage, filepath.Join(tmp, "image.raw.zst")); err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(a, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "assets.json"), b, 0o644); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, dir); err != nil && !os.IsExist(err) {
		return nil, err
	}
	if progress != nil {
		fi, _ := os.Stat(a.Image)
		var z int64
		if fi != nil {
			z = fi.Size()
		}
		fmt.Fprintf(progress, "network boot assets of %s: image %d MiB, %d MiB compressed, in %s\n", filepath.Base(rawImage), a.Size>>20, z>>20, time.Since(start).Round(time.Second))
	}
	return a, nil
}

func hashFile(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(h, f)
	return err
}

// appendInstaller writes out: the role's initrd, padded to 4 bytes, then a
// cpio archive (newc) holding the installer. The kernel unpacks
// concatenated archives in order.
func appendInstaller(roleInitrd, installer, out string) error {
	base, err := os.ReadFile(roleInitrd)
	if err != nil {
		return err
	}
	bin, err := os.ReadFile(installer)
	if err != nil {
		return fmt.Errorf("read the installer (make build writes bin/kubeup-installer): %w", err)
	}
	var buf bytes.Buffer
	buf.Write(base)
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
	w := cpio.NewWriter(&buf)
	if err := w.WriteHeader(&cpio.Header{Name: InstallerName, Mode: 0o755 | cpio.TypeReg, Size: int64(len(bin)), Links: 1}); err != nil {
		return err
	}
	if _, err := w.Write(bin); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	return os.WriteFile(out, buf.Bytes(), 0o644)
}

// compress writes raw as zstd and returns raw's size and sha256.
func compress(ctx context.Context, raw, out string) (int64, string, error) {
	in, err := os.Open(raw)
	if err != nil {
		return 0, "", err
	}
	defer in.Close()
	f, err := os.Create(out)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	zw, err := zstd.NewWriter(f, zstd.WithEncoderLevel(zstd.SpeedDefault))
	if err != nil {
		return 0, "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(zw, h), ctxReader{ctx, in})
	if err != nil {
		return 0, "", err
	}
	if err := zw.Close(); err != nil {
		return 0, "", err
	}
	return n, hex.EncodeToString(h.Sum(nil)), f.Close()
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
