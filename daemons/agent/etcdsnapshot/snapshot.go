package etcdsnapshot

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
	"path/filepath"
)

// ErrCorrupt: a file is not a whole etcd snapshot (truncated, altered, or
// not one at all).
var ErrCorrupt = errors.New("not a whole etcd snapshot")

// Info describes a verified snapshot file.
type Info struct {
	// Size is the file's size: the database and its 32-byte sha256.
	Size int64 `json:"sizeBytes"`
	// SHA256 is the database's digest (hex), as etcd appended it.
	SHA256 string `json:"sha256"`
}

// bbolt's on-disk format (go.etcd.io/bbolt internal/common): every page
// starts with a 16-byte header (id uint64, flags uint16, count uint16,
// overflow uint32); pages 0 and 1 are meta pages whose body is magic,
// version, page size, flags (uint32 each), the root bucket (16 bytes), the
// freelist, high-water and transaction ids (uint64 each) and an FNV-64a
// checksum of everything before it. bbolt writes them in the machine's
// byte order: little-endian on amd64 and arm64, where kubeup runs.
const (
	pageHeaderSize = 16
	metaPageFlag   = 0x04
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	metaSumOffset  = 56 // bytes of the meta body the checksum covers
	minPageSize    = 512
	maxPageSize    = 64 << 10
	// sectorSize: etcd recognises a snapshot with a digest by its size,
	// a multiple of 512 plus sha256.Size (etcdutl's hasChecksum).
	sectorSize = 512
)

// Verify checks that path is a whole etcd snapshot as Maintenance.Snapshot
// streams it: a bbolt database whose two meta pages are intact, followed
// by the sha256 of the database, which must match. Errors wrap ErrCorrupt
// and say what is wrong.
func Verify(path string) (Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Info{}, err
	}
	info, err := verify(f, st.Size())
	if err != nil {
		return Info{}, fmt.Errorf("%s: %w", path, err)
	}
	return info, nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func verify(r io.ReaderAt, size int64) (Info, error) {
	if size < 2*minPageSize+sha256.Size {
		return Info{}, corrupt("%d bytes is too short for a database and its sha256", size)
	}
	if size%sectorSize != sha256.Size {
		return Info{}, corrupt("%d bytes is not a database plus the 32-byte sha256 etcd appends (truncated?)", size)
	}
	dbSize := size - sha256.Size
	pageSize, err := checkMeta(r, 0, 0)
	if err != nil {
		return Info{}, err
	}
	if dbSize%int64(pageSize) != 0 || dbSize < 2*int64(pageSize) {
		return Info{}, corrupt("database of %d bytes is not whole pages of %d bytes", dbSize, pageSize)
	}
	if _, err := checkMeta(r, int64(pageSize), 1); err != nil {
		return Info{}, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(r, 0, dbSize)); err != nil {
		return Info{}, fmt.Errorf("read database: %w", err)
	}
	want := make([]byte, sha256.Size)
	if _, err := r.ReadAt(want, dbSize); err != nil {
		return Info{}, fmt.Errorf("read sha256: %w", err)
	}
	if got := h.Sum(nil); !bytes.Equal(got, want) {
		return Info{}, corrupt("the database's sha256 is %x, the snapshot says %x (altered or truncated)", got, want)
	}
	return Info{Size: size, SHA256: hex.EncodeToString(want)}, nil
}

// checkMeta checks the meta page with id at off and returns its page size.
func checkMeta(r io.ReaderAt, off int64, id uint64) (int, error) {
	b := make([]byte, pageHeaderSize+metaSumOffset+8)
	if _, err := r.ReadAt(b, off); err != nil {
		return 0, corrupt("meta page %d: %v", id, err)
	}
	le := binary.LittleEndian
	if got := le.Uint64(b[0:]); got != id {
		return 0, corrupt("meta page %d: page id %d", id, got)
	}
	if flags := le.Uint16(b[8:]); flags != metaPageFlag {
		return 0, corrupt("meta page %d: flags %#x, not a meta page", id, flags)
	}
	meta := b[pageHeaderSize:]
	if magic := le.Uint32(meta[0:]); magic != boltMagic {
		return 0, corrupt("meta page %d: magic %#x, want %#x (not a bbolt database)", id, magic, boltMagic)
	}
	if v := le.Uint32(meta[4:]); v != boltVersion {
		return 0, corrupt("meta page %d: bbolt format version %d, want %d", id, v, boltVersion)
	}
	ps := int(le.Uint32(meta[8:]))
	if ps < minPageSize || ps > maxPageSize || ps&(ps-1) != 0 {
		return 0, corrupt("meta page %d: page size %d", id, ps)
	}
	sum := fnv.New64a()
	sum.Write(meta[:metaSumOffset])
	if got, want := sum.Sum64(), le.Uint64(meta[metaSumOffset:]); got != want {
		return 0, corrupt("meta page %d: checksum %#x, want %#x", id, want, got)
	}
	return ps, nil
}

// Save streams r into dir/name: into a temporary file in dir, synced to
// disk, verified, then renamed over name, and the directory synced. On any
// failure the temporary file is removed and name is untouched, so no
// half-written or corrupt snapshot ever has a snapshot's name. The file is
// readable by its owner only: a snapshot holds every Secret.
func Save(dir, name string, r io.Reader) (Info, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Info{}, err
	}
	tmp, err := os.CreateTemp(dir, "."+name+".*.tmp")
	if err != nil {
		return Info{}, err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := io.Copy(tmp, r); err != nil {
		return Info{}, fmt.Errorf("receive snapshot: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return Info{}, fmt.Errorf("sync %s: %w", tmp.Name(), err)
	}
	st, err := tmp.Stat()
	if err != nil {
		return Info{}, err
	}
	info, err := verify(tmp, st.Size())
	if err != nil {
		return Info{}, err
	}
	if err := tmp.Close(); err != nil {
		return Info{}, err
	}
	path := filepath.Join(dir, name)
	if err := os.Rename(tmp.Name(), path); err != nil {
		return Info{}, err
	}
	done = true
	return info, syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
