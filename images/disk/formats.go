package disk

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
)

// Formats kubeup writes.
const (
	FormatRaw   = "raw"
	FormatQCOW2 = "qcow2"
	FormatGCE   = "gce"
)

// Formats lists every supported format.
func Formats() []string { return []string{FormatRaw, FormatQCOW2, FormatGCE} }

// Ext is the file extension of a format.
func Ext(format string) string {
	if format == FormatGCE {
		return "tar.gz"
	}
	return format
}

// Convert writes raw as format to out (a temporary name the caller renames).
//   - qcow2: compressed (zlib clusters, readable by every QEMU and cloud importer)
//   - gce:   a gzipped tar holding disk.raw in the old GNU format, as
//     Compute Engine's image import expects, with sparse handling
func Convert(ctx context.Context, raw, format, out string, sourceDateEpoch int64) error {
	env := append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(sourceDateEpoch, 10), "TZ=UTC")
	switch format {
	case FormatRaw:
		// Copy keeping holes: cp --sparse=always is as fast as it gets.
		return run(ctx, env, "cp", "--sparse=always", raw, out)
	case FormatQCOW2:
		return run(ctx, env, "qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type=zlib", raw, out)
	case FormatGCE:
		dir, err := os.MkdirTemp(filepath.Dir(out), ".gce-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if err := os.Link(raw, filepath.Join(dir, "disk.raw")); err != nil {
			if err := run(ctx, env, "cp", "--sparse=always", raw, filepath.Join(dir, "disk.raw")); err != nil {
				return err
			}
		}
		mtime := "@" + strconv.FormatInt(sourceDateEpoch, 10)
		return run(ctx, env, "tar", "--format=oldgnu", "--sparse", "--owner=0", "--group=0", "--numeric-owner",
			"--mtime="+mtime, "-C", dir, "-czf", out, "disk.raw")
	}
	return fmt.Errorf("unknown image format %q (use one of raw, qcow2, gce)", format)
}
