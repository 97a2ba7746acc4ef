package cloudinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/diskfs/go-diskfs/backend/file"
	"github.com/diskfs/go-diskfs/filesystem/iso9660"
)

// SeedVolumeID is the volume identifier cloud-init's NoCloud datasource looks for.
const SeedVolumeID = "cidata"

// Seed is the content of a NoCloud seed.
type Seed struct {
	UserData []byte
	MetaData []byte
	// NetworkConfig and VendorData are written only when non-nil.
	NetworkConfig []byte
	VendorData    []byte
}

func (s Seed) files() []seedFile {
	files := []seedFile{{"meta-data", s.MetaData}, {"user-data", s.UserData}}
	if s.NetworkConfig != nil {
		files = append(files, seedFile{"network-config", s.NetworkConfig})
	}
	if s.VendorData != nil {
		files = append(files, seedFile{"vendor-data", s.VendorData})
	}
	return files
}

type seedFile struct {
	name    string
	content []byte
}

// WriteSeed writes s to path as an ISO 9660 image with volume identifier "cidata" and the files user-data,
// meta-data and, when set, network-config and vendor-data in its root directory. The names are carried by Rock
// Ridge and Joliet, since plain ISO 9660 names cannot contain '-'. The image is deterministic: the same Seed
// always gives the same bytes. It is written to a temporary file next to path and renamed into place.
//
// The image is built by github.com/diskfs/go-diskfs, which stamps the volume descriptors with the current time
// and copies times and owners from its staging directory; normalizeISO then fixes those fields.
func WriteSeed(path string, s Seed) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err := buildISO(tmp, s); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := tmp.Chmod(0o644); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write seed %s: %w", path, err)
	}
	return nil
}

func buildISO(f *os.File, s Seed) error {
	// go-diskfs builds the image from a staging directory. Modes are set explicitly so the umask does not leak
	// into the Rock Ridge attributes (the root would otherwise be MkdirTemp's 0700).
	staging, err := os.MkdirTemp("", "kubeup-seed-*")
	if err != nil {
		return fmt.Errorf("stage seed files: %w", err)
	}
	defer func() { _ = os.RemoveAll(staging) }() // Finalize removes it too; this covers the error paths
	if err := os.Chmod(staging, 0o755); err != nil {
		return fmt.Errorf("stage seed files: %w", err)
	}
	for _, sf := range s.files() {
		p := filepath.Join(staging, sf.name)
		if err := os.WriteFile(p, sf.content, 0o644); err != nil {
			return fmt.Errorf("stage seed files: %w", err)
		}
		if err := os.Chmod(p, 0o644); err != nil {
			return fmt.Errorf("stage seed files: %w", err)
		}
	}

	fsys, err := iso9660.Create(file.New(f, false), 0, 0, isoBlockSize, staging)
	if err != nil {
		return fmt.Errorf("create iso9660: %w", err)
	}
	if err := fsys.Finalize(iso9660.FinalizeOptions{
		RockRidge:        true, // Linux (and so cloud-init, which mounts the seed) reads names from Rock Ridge
		Joliet:           true, // for readers without Rock Ridge support
		VolumeIdentifier: SeedVolumeID,
	}); err != nil {
		return fmt.Errorf("finalize iso9660: %w", err)
	}
	if err := normalizeISO(f); err != nil {
		return fmt.Errorf("normalize iso9660: %w", err)
	}
	return nil
}

// ReadSeed reads a seed written by WriteSeed (or any NoCloud ISO with Rock Ridge or Joliet names). Files that are
// absent stay nil.
func ReadSeed(path string) (Seed, error) {
	f, err := os.Open(path)
	if err != nil {
		return Seed{}, fmt.Errorf("read seed: %w", err)
	}
	defer func() { _ = f.Close() }()
	fsys, err := iso9660.Read(file.New(f, true), 0, 0, isoBlockSize)
	if err != nil {
		return Seed{}, fmt.Errorf("read seed %s: %w", path, err)
	}
	if label := strings.TrimRight(fsys.Label(), " \x00"); label != SeedVolumeID {
		return Seed{}, fmt.Errorf("read seed %s: volume identifier is %q, not %q", path, label, SeedVolumeID)
	}
	var s Seed
	for _, t := range []struct {
		name string
		dst  *[]byte
	}{
		{"user-data", &s.UserData},
		{"meta-data", &s.MetaData},
		{"network-config", &s.NetworkConfig},
		{"vendor-data", &s.VendorData},
	} {
		b, err := readISOFile(fsys, t.name)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return Seed{}, fmt.Errorf("read seed %s: %s: %w", path, t.name, err)
		}
		*t.dst = b
	}
	return s, nil
}

func readISOFile(fsys *iso9660.FileSystem, name string) ([]byte, error) {
	f, err := fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer func() { _ = f.Close() }()
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	if b == nil {
		b = []byte{}
	}
	return b, nil
}

// ISO 9660 (ECMA-119) layout used by normalizeISO.
const (
	isoBlockSize       = 2048
	isoFirstDescriptor = 16 // the system area is blocks 0-15
	vdPrimary          = 1
	vdSupplementary    = 2 // Joliet
	vdTerminator       = 255
	vdVolumeSpaceSize  = 80  // both-endian uint32, in blocks
	vdRootRecord       = 156 // 34-byte directory record of the root
	vdDates            = 813 // creation, modification, expiration, effective: 17 bytes each
	drRecordingDate    = 18  // 7 bytes
	drFlags            = 25
	drNameLen          = 32
	drName             = 33
	flagDirectory      = 0x02
)

// normalizeISO makes an image from go-diskfs reproducible: volume descriptor dates become fixed, every directory
// record and Rock Ridge TF timestamp becomes the fixed recording time, Rock Ridge owners become 0:0 (as
// genisoimage -r does), and the file is padded to the volume size it declares (go-diskfs leaves the last path
// table block short).
func normalizeISO(f *os.File) error {
	img, err := io.ReadAll(io.NewSectionReader(f, 0, 1<<40))
	if err != nil {
		return err
	}
	n := &isoNormalizer{img: img, visited: map[uint32]bool{}}
	var volumeBlocks uint32
	for blk := isoFirstDescriptor; ; blk++ {
		vd, err := n.block(uint32(blk), 1)
		if err != nil {
			return fmt.Errorf("volume descriptor %d: %w", blk, err)
		}
		if !bytes.Equal(vd[1:6], []byte("CD001")) {
			return fmt.Errorf("volume descriptor %d: bad standard identifier", blk)
		}
		if vd[0] == vdTerminator {
			break
		}
		if vd[0] != vdPrimary && vd[0] != vdSupplementary {
			continue
		}
		volumeBlocks = max(volumeBlocks, binary.LittleEndian.Uint32(vd[vdVolumeSpaceSize:]))
		for i := range 4 {
			d := vd[vdDates+17*i : vdDates+17*(i+1)]
			if i == 2 {
				copy(d, "0000000000000000\x00") // expiration: "not specified" (go-diskfs sets it to now)
			} else {
				copy(d, isoDecDate)
			}
		}
		for _, f := range vdTextFields {
			padText(vd[f[0]:f[1]], vd[0] == vdSupplementary)
		}
		root := vd[vdRootRecord : vdRootRecord+34]
		copy(root[drRecordingDate:], isoRecordingDate[:])
		if err := n.directory(root, vd[0] == vdPrimary); err != nil {
			return err
		}
	}
	if err := n.write(f); err != nil {
		return err
	}
	size := int64(volumeBlocks) * isoBlockSize
	if size < int64(len(n.img)) {
		return fmt.Errorf("image is %d bytes, more than its declared %d blocks", len(n.img), volumeBlocks)
	}
	return f.Truncate(size)
}

// vdTextFields are the identifier fields of a volume descriptor ([start, end) byte offsets): system, volume,
// volume set, publisher, data preparer, application, copyright, abstract and bibliographic file identifiers.
var vdTextFields = [][2]int{{8, 40}, {40, 72}, {190, 318}, {318, 446}, {446, 574}, {574, 702}, {702, 739}, {739, 776}, {776, 813}}

// padText replaces the NUL padding go-diskfs leaves after an identifier with spaces, as ECMA-119 8.4 requires
// (UCS-2 spaces in a Joliet descriptor), so readers that do not stop at NUL see "cidata", not "cidata\x00...".
func padText(field []byte, ucs2 bool) {
	if !ucs2 {
		end := len(bytes.TrimRight(field, "\x00"))
		for i := end; i < len(field); i++ {
			field[i] = ' '
		}
		return
	}
	end := len(field) - len(field)%2
	for end >= 2 && field[end-2] == 0 && field[end-1] == 0 {
		end -= 2
	}
	for i := end; i+1 < len(field); i += 2 {
		field[i], field[i+1] = 0, ' '
	}
	if len(field)%2 == 1 && field[len(field)-1] == 0 {
		field[len(field)-1] = ' '
	}
}

// isoRecordingDate is 1970-01-01T00:00:00Z as a 7-byte directory record / Rock Ridge TF date.
var isoRecordingDate = [7]byte{70, 1, 1, 0, 0, 0, 0}

// isoDecDate is the same time as a 17-byte volume descriptor date.
const isoDecDate = "1970010100000000\x00"

type isoNormalizer struct {
	img     []byte
	visited map[uint32]bool
}

func (n *isoNormalizer) block(blk, count uint32) ([]byte, error) {
	start := int64(blk) * isoBlockSize
	end := start + int64(count)*isoBlockSize
	if end > int64(len(n.img)) {
		return nil, fmt.Errorf("block %d+%d is past the end of the image", blk, count)
	}
	return n.img[start:end], nil
}

func (n *isoNormalizer) extent(loc, size uint32) ([]byte, error) {
	start := int64(loc) * isoBlockSize
	end := start + int64(size)
	if end > int64(len(n.img)) {
		return nil, fmt.Errorf("extent %d+%d is past the end of the image", loc, size)
	}
	return n.img[start:end], nil
}

// directory normalises the directory whose record is rec, then its subdirectories.
func (n *isoNormalizer) directory(rec []byte, susp bool) error {
	loc := binary.LittleEndian.Uint32(rec[2:])
	size := binary.LittleEndian.Uint32(rec[10:])
	if n.visited[loc] {
		return nil
	}
	n.visited[loc] = true
	data, err := n.extent(loc, size)
	if err != nil {
		return err
	}
	var subdirs [][]byte
	for off := 0; off < len(data); {
		l := int(data[off])
		if l == 0 { // records do not cross block boundaries; the rest of this block is padding
			off = (off/isoBlockSize + 1) * isoBlockSize
			continue
		}
		if l < drName || off+l > len(data) {
			return fmt.Errorf("directory at block %d: bad record length %d at offset %d", loc, l, off)
		}
		r := data[off : off+l]
		copy(r[drRecordingDate:], isoRecordingDate[:])
		nameLen := int(r[drNameLen])
		if drName+nameLen > l {
			return fmt.Errorf("directory at block %d: bad name length at offset %d", loc, off)
		}
		if susp {
			su := drName + nameLen
			if nameLen%2 == 0 {
				su++ // padding byte after an even-length name
			}
			if su < l {
				if err := n.systemUse(r[su:], 0); err != nil {
					return fmt.Errorf("directory at block %d: %w", loc, err)
				}
			}
		}
		name := r[drName : drName+nameLen]
		isDotOrDotDot := nameLen == 1 && (name[0] == 0 || name[0] == 1)
		if r[drFlags]&flagDirectory != 0 && !isDotOrDotDot {
			subdirs = append(subdirs, r)
		}
		off += l
	}
	for _, r := range subdirs {
		if err := n.directory(r, susp); err != nil {
			return err
		}
	}
	return nil
}

// systemUse normalises the SUSP entries in area (IEEE P1281/P1282), following continuation areas.
func (n *isoNormalizer) systemUse(area []byte, depth int) error {
	if depth > 16 {
		return fmt.Errorf("too many chained CE entries")
	}
	for len(area) >= 4 {
		sig, l := string(area[0:2]), int(area[2])
		if l < 4 || l > len(area) {
			return nil // trailing padding or a malformed entry: nothing more to normalise
		}
		e := area[:l]
		switch sig {
		case "TF": // timestamps
			if l < 5 {
				return fmt.Errorf("short TF entry")
			}
			flags := e[4]
			width := 7
			if flags&0x80 != 0 {
				width = 17
			}
			for off := 5; off+width <= l; off += width {
				if width == 7 {
					copy(e[off:], isoRecordingDate[:])
				} else {
					copy(e[off:], isoDecDate)
				}
			}
		case "PX": // POSIX attributes: mode, links, uid, gid (both-endian uint32 each)
			if l >= 36 {
				putBoth32(e[20:], 0)
				putBoth32(e[28:], 0)
			}
		case "CE": // continuation area
			if l < 28 {
				return fmt.Errorf("short CE entry")
			}
			blk := binary.LittleEndian.Uint32(e[4:])
			off := binary.LittleEndian.Uint32(e[12:])
			size := binary.LittleEndian.Uint32(e[20:])
			start := int64(blk)*isoBlockSize + int64(off)
			if start+int64(size) > int64(len(n.img)) {
				return fmt.Errorf("CE entry points past the end of the image")
			}
			if err := n.systemUse(n.img[start:start+int64(size)], depth+1); err != nil {
				return err
			}
		case "ST": // terminator
			return nil
		}
		area = area[l:]
	}
	return nil
}

func putBoth32(b []byte, v uint32) {
	binary.LittleEndian.PutUint32(b[0:], v)
	binary.BigEndian.PutUint32(b[4:], v)
}

func (n *isoNormalizer) write(f *os.File) error {
	if _, err := f.WriteAt(n.img, 0); err != nil {
		return err
	}
	return nil
}
