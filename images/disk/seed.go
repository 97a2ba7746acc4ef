package disk

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// SeedDir is where cloud-init's NoCloud datasource finds a seed on the root
// filesystem itself (no CIDATA disk, no network): a machine installed to
// its own disk keeps its seed there, so every boot needs nothing else.
const SeedDir = "/var/lib/cloud/seed/nocloud"

// SeedFiles are the files of a NoCloud seed, in the order they are written.
var SeedFiles = []string{"meta-data", "user-data", "network-config"}

// RootPartition finds the root partition of a disk that Build made (by
// its type, the Discoverable Partitions Specification's x86-64 root) and
// returns its byte offset and size.
func RootPartition(disk string) (offset, size int64, err error) {
	f, err := os.Open(disk)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	table, err := gpt.Read(f, 512, 512)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: no GPT partition table: %w", disk, err)
	}
	for _, p := range table.Partitions {
		if strings.EqualFold(string(p.Type), rootType) {
			return int64(p.Start) * 512, int64(p.End-p.Start+1) * 512, nil
		}
	}
	return 0, 0, fmt.Errorf("%s: no root partition (type %s): not a kubeup image", disk, rootType)
}

// WriteSeed writes a NoCloud seed (files named as SeedFiles; others are
// refused) into SeedDir on the root filesystem of a disk image or block
// device that Build made, through debugfs, without mounting anything. The
// files are root's, mode 0600 in a 0700 directory: the user-data of a
// master holds the cluster's keys. It reads every file back to check it.
func WriteSeed(ctx context.Context, disk string, files map[string][]byte) error {
	for name := range files {
		if !slices.Contains(SeedFiles, name) {
			return fmt.Errorf("seed file %q is not one of %s", name, strings.Join(SeedFiles, ", "))
		}
	}
	off, _, err := RootPartition(disk)
	if err != nil {
		return err
	}
	fs := fmt.Sprintf("%s?offset=%d", disk, off)
	tmp, err := os.MkdirTemp("", "kubeup-seed-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// debugfs goes on after a failed command (mkdir of a directory that
	// exists, rm of a file that does not): the read-back below is the check.
	var script strings.Builder
	dir := ""
	for _, part := range strings.Split(strings.TrimPrefix(SeedDir, "/"), "/") {
		dir += "/" + part
		fmt.Fprintf(&script, "mkdir %s\n", dir)
	}
	fmt.Fprintf(&script, "sif %s mode 040700\nsif %s uid 0\nsif %s gid 0\n", SeedDir, SeedDir, SeedDir)
	for _, name := range SeedFiles {
		data, ok := files[name]
		if !ok {
			continue
		}
		src := filepath.Join(tmp, name)
		if err := os.WriteFile(src, data, 0o600); err != nil {
			return err
		}
		dst := path.Join(SeedDir, name)
		fmt.Fprintf(&script, "rm %s\nwrite %s %s\nsif %s mode 0100600\nsif %s uid 0\nsif %s gid 0\n", dst, src, dst, dst, dst, dst)
	}
	cmds := filepath.Join(tmp, "debugfs.cmds")
	if err := os.WriteFile(cmds, []byte(script.String()), 0o600); err != nil {
		return err
	}
	if err := run(ctx, nil, "debugfs", "-w", "-f", cmds, fs); err != nil {
		return fmt.Errorf("write the seed into %s: %w", disk, err)
	}
	for name, want := range files {
		got, err := ReadFile(ctx, disk, path.Join(SeedDir, name))
		if err != nil {
			return fmt.Errorf("read back the seed: %w", err)
		}
		if !bytes.Equal(got, want) {
			return fmt.Errorf("%s: %s on the disk differs from what was written (%d bytes, want %d)", disk, path.Join(SeedDir, name), len(got), len(want))
		}
	}
	return nil
}

// ReadFile reads one file from the root filesystem of a disk Build made.
func ReadFile(ctx context.Context, disk, name string) ([]byte, error) {
	off, _, err := RootPartition(disk)
	if err != nil {
		return nil, err
	}
	// debugfs -R "cat" prints the file to stdout, and errors to stderr
	// with exit status 0: an empty stdout with anything on stderr is one.
	out, errOut, err := output(ctx, "debugfs", "-R", "cat "+name, fmt.Sprintf("%s?offset=%d", disk, off))
	if err != nil {
		return nil, err
	}
	if len(out) == 0 && bytes.Contains(errOut, []byte(name)) {
		return nil, fmt.Errorf("%s: %s: %s", disk, name, strings.TrimSpace(lastLine(errOut)))
	}
	return out, nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}
