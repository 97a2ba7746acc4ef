package disk

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// Labels and identifiers. Fixed values keep builds reproducible; machines
// made from the image differ by machine-id and hostname, not by disk ids.
const (
	RootLabel = "kubeup-root"
	ESPLabel  = "KUBEUP-ESP"
	// RootUUID is the root filesystem's UUID (and its htree hash seed).
	RootUUID = "6b756265-7570-4000-8000-726f6f746673"
	diskGUID = "6B756265-7570-4000-8000-6469736B0001"
	espGUID  = "6B756265-7570-4000-8000-657370000001"
	rootGUID = "6B756265-7570-4000-8000-726F6F740001"
	// espVolumeID is the FAT volume serial number.
	espVolumeID = "4b554245"
	// Partition types: EFI system, and the Discoverable Partitions
	// Specification's "Linux root (x86-64)".
	espType  = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
	rootType = RootType
	mib      = 1 << 20
)

// RootType is the root partition's GPT type: the Discoverable Partitions
// Specification's "Linux root (x86-64)".
const RootType = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"

// LayoutVersion changes whenever Build lays a disk out differently.
const LayoutVersion = 1

// Host files the boot loaders come from (Debian packages systemd-boot-efi,
// syslinux-common).
var (
	SystemdBootEFI = "/usr/lib/systemd/boot/efi/systemd-bootx64.efi"
	GPTMBR         = "/usr/lib/syslinux/mbr/gptmbr.bin"
)

// Boot describes what the boot loaders start.
type Boot struct {
	Kernel  string // path on the host
	Initrd  string
	Cmdline string // without root=
}

// Options for Build.
type Options struct {
	// Root is the root filesystem tree (owned as it should be in the image).
	Root string
	Boot Boot
	// ESPSize in bytes (default 96 MiB).
	ESPSize int64
	// Slack is free space left in the root filesystem (default 256 MiB); the
	// filesystem grows to the disk on first boot.
	Slack int64
	// SourceDateEpoch fixes timestamps the tools write.
	SourceDateEpoch int64
	// WorkDir holds intermediate images.
	WorkDir string
}

// Result is what Build made.
type Result struct {
	Raw      string // the disk image
	RootSize int64  // bytes of the root filesystem
	ESPSize  int64
}

// Build makes a raw GPT disk at out.
func Build(ctx context.Context, out string, o Options) (*Result, error) {
	if o.ESPSize == 0 {
		o.ESPSize = 96 * mib
	}
	if o.Slack == 0 {
		o.Slack = 256 * mib
	}
	env := append(os.Environ(),
		"SOURCE_DATE_EPOCH="+strconv.FormatInt(o.SourceDateEpoch, 10),
		"E2FSPROGS_FAKE_TIME="+strconv.FormatInt(max(o.SourceDateEpoch, 1), 10),
		"MTOOLS_SKIP_CHECK=1", "TZ=UTC")
	rootImg := filepath.Join(o.WorkDir, "root.ext4")
	rootSize, err := makeRootFS(ctx, env, rootImg, o)
	if err != nil {
		return nil, err
	}
	espImg := filepath.Join(o.WorkDir, "esp.vfat")
	if err := makeESP(ctx, env, espImg, o); err != nil {
		return nil, err
	}
	if err := assemble(ctx, env, out, espImg, o.ESPSize, rootImg, rootSize); err != nil {
		return nil, err
	}
	return &Result{Raw: out, RootSize: rootSize, ESPSize: o.ESPSize}, nil
}

// KernelCmdline is the full command line both boot loaders pass.
func KernelCmdline(extra string) string {
	return strings.TrimSpace("root=LABEL=" + RootLabel + " ro " + extra)
}

func makeRootFS(ctx context.Context, env []string, img string, o Options) (int64, error) {
	used, err := treeSize(o.Root)
	if err != nil {
		return 0, err
	}
	// ext4 metadata (inode tables, journal) takes roughly 8% plus a journal.
	size := roundUp(used+used/8+o.Slack+64*mib, mib)
	if err := truncate(img, size); err != nil {
		return 0, err
	}
	args := []string{"-q", "-F", "-t", "ext4", "-L", RootLabel, "-U", RootUUID,
		"-E", "hash_seed=" + RootUUID + ",root_owner=0:0",
		"-O", "^metadata_csum_seed", "-I", "256", "-d", o.Root, img}
	if err := run(ctx, env, "mkfs.ext4", args...); err != nil {
		return 0, err
	}
	return size, nil
}

func makeESP(ctx context.Context, env []string, img string, o Options) error {
	if err := truncate(img, o.ESPSize); err != nil {
		return err
	}
	if err := run(ctx, env, "mkfs.vfat", "-F", "32", "-n", ESPLabel, "-i", espVolumeID, img); err != nil {
		return err
	}
	cmdline := KernelCmdline(o.Boot.Cmdline)
	files := map[string][]byte{
		"/loader/loader.conf":         []byte("default kubeup.conf\ntimeout 0\neditor no\n"),
		"/loader/entries/kubeup.conf": []byte("title kubeup\nlinux /vmlinuz\ninitrd /initrd.img\noptions " + cmdline + "\n"),
		"/syslinux/syslinux.cfg":      []byte("DEFAULT kubeup\nPROMPT 0\nTIMEOUT 0\nLABEL kubeup\n  LINUX /vmlinuz\n  INITRD /initrd.img\n  APPEND " + cmdline + "\n"),
	}
	for _, d := range []string{"::/EFI", "::/EFI/BOOT", "::/loader", "::/loader/entries", "::/syslinux"} {
		if err := run(ctx, env, "mmd", "-i", img, d); err != nil {
			return err
		}
	}
	tmp, err := os.MkdirTemp(o.WorkDir, "esp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for dst, data := range files {
		src := filepath.Join(tmp, filepath.Base(dst))
		if err := os.WriteFile(src, data, 0o644); err != nil {
			return err
		}
		if err := run(ctx, env, "mcopy", "-i", img, "-m", src, "::"+dst); err != nil {
			return err
		}
	}
	for src, dst := range map[string]string{
		SystemdBootEFI: "::/EFI/BOOT/BOOTX64.EFI",
		o.Boot.Kernel:  "::/vmlinuz",
		o.Boot.Initrd:  "::/initrd.img",
	} {
		if err := run(ctx, env, "mcopy", "-i", img, src, dst); err != nil {
			return err
		}
	}
	// SYSLINUX installs its loader into the FAT image through mtools.
	return run(ctx, env, "syslinux", "--install", "--directory", "/syslinux", img)
}

// assemble writes the GPT disk: 1 MiB for the partition table, the ESP
// (legacy-BIOS-bootable, so gptmbr.bin chain-loads SYSLINUX from it), the
// root partition, and room for the backup table.
func assemble(ctx context.Context, env []string, out, esp string, espSize int64, root string, rootSize int64) error {
	total := mib + espSize + rootSize + mib
	if err := os.Remove(out); err != nil && !os.IsNotExist(err) {
		return err
	}
	if err := truncate(out, total); err != nil {
		return err
	}
	espStart := int64(mib / 512)
	espEnd := espStart + espSize/512 - 1
	rootStart := espEnd + 1
	rootEnd := rootStart + rootSize/512 - 1
	if err := run(ctx, env, "sgdisk", "--clear",
		"--disk-guid="+diskGUID,
		fmt.Sprintf("--new=1:%d:%d", espStart, espEnd), "--typecode=1:"+espType, "--change-name=1:ESP",
		"--partition-guid=1:"+espGUID, "--attributes=1:set:2",
		fmt.Sprintf("--new=2:%d:%d", rootStart, rootEnd), "--typecode=2:"+rootType, "--change-name=2:root",
		"--partition-guid=2:"+rootGUID,
		out); err != nil {
		return err
	}
	mbr, err := os.ReadFile(GPTMBR)
	if err != nil {
		return fmt.Errorf("read SYSLINUX's GPT MBR (install syslinux-common): %w", err)
	}
	if len(mbr) > 440 {
		mbr = mbr[:440]
	}
	f, err := os.OpenFile(out, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	if err := copyInto(f, esp, espStart*512); err != nil {
		return err
	}
	if err := copyInto(f, root, rootStart*512); err != nil {
		return err
	}
	return f.Close()
}

// copyInto copies src into dst at off, skipping zero blocks so the disk
// stays sparse.
func copyInto(dst *os.File, src string, off int64) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	buf := make([]byte, mib)
	zero := make([]byte, mib)
	for pos := int64(0); ; {
		n, err := in.Read(buf)
		if n > 0 {
			if !bytes.Equal(buf[:n], zero[:n]) {
				if _, werr := dst.WriteAt(buf[:n], off+pos); werr != nil {
					return werr
				}
			}
			pos += int64(n)
		}
		if err != nil {
			if err == io.EOF {
				return nil
			}
			return err
		}
	}
}

func truncate(path string, size int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func roundUp(v, to int64) int64 { return (v + to - 1) / to * to }

// treeSize is the apparent size of a tree in bytes, counting every file
// and directory at least one 4 KiB block.
func treeSize(root string) (int64, error) {
	var total int64
	err := filepath.Walk(root, func(_ string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		total += roundUp(max(fi.Size(), 1), 4096)
		return nil
	})
	return total, err
}

// run runs a host tool, keeping its output in the error.
func run(ctx context.Context, env []string, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// output runs a host tool and returns its standard output and error apart.
func output(ctx context.Context, name string, args ...string) (stdout, stderr []byte, err error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(e.Bytes()))
	}
	return o.Bytes(), e.Bytes(), nil
}
