package installer

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// headerSize is the head of the disk written last: the protective MBR and
// the primary GPT. Until it is written the disk boots nothing, so a failed
// or corrupt download never boots.
const headerSize = 1 << 20

// Disk is what an image is written to: a block device or, in tests, a file.
type Disk interface {
	io.WriterAt
	Sync() error
}

// Progress is told how far a write has come.
type Progress func(written int64)

// WriteImage writes an image of size bytes from r to d: it first zeroes the
// disk's head (an older system there must not boot half-overwritten), then
// writes everything past the head, checks the size and sha256 of the whole
// stream, and only then writes the head. It reports progress at most every
// interval.
func WriteImage(d Disk, r io.Reader, size int64, wantSHA256 string, interval time.Duration, progress Progress) error {
	if size < headerSize {
		return fmt.Errorf("image of %d bytes is smaller than its %d-byte header", size, headerSize)
	}
	zero := make([]byte, headerSize)
	if _, err := d.WriteAt(zero, 0); err != nil {
		return fmt.Errorf("clear the disk's head: %w", err)
	}
	if err := d.Sync(); err != nil {
		return err
	}
	h := sha256.New()
	head := make([]byte, headerSize)
	if _, err := io.ReadFull(io.TeeReader(r, h), head); err != nil {
		return fmt.Errorf("read the image: %w", err)
	}
	buf := make([]byte, 4<<20)
	off := int64(headerSize)
	last := time.Now()
	for {
		n, err := r.Read(buf)
		if n > 0 {
			h.Write(buf[:n])
			if off+int64(n) > size {
				return fmt.Errorf("the image is longer than its %d bytes", size)
			}
			if _, werr := d.WriteAt(buf[:n], off); werr != nil {
				return fmt.Errorf("write at %d: %w", off, werr)
			}
			off += int64(n)
			if progress != nil && time.Since(last) >= interval {
				progress(off)
				last = time.Now()
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read the image at %d: %w", off, err)
		}
	}
	if off != size {
		return fmt.Errorf("the image ended at %d bytes of %d", off, size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != wantSHA256 {
		return fmt.Errorf("the image's sha256 is %s, want %s: the disk is left unbootable", got, wantSHA256)
	}
	if err := d.Sync(); err != nil {
		return err
	}
	if _, err := d.WriteAt(head, 0); err != nil {
		return fmt.Errorf("write the disk's head: %w", err)
	}
	if progress != nil {
		progress(off)
	}
	return d.Sync()
}
