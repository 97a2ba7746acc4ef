package logforward

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Buffer is an on-disk FIFO of records: append-only segment files
// <id>.seg in a directory, read from the oldest. Records are framed as
//
//	length uint32 | crc32c uint32 | payload
//	payload: version 1 | uvarint tag length | tag | unix nanoseconds int64 | body
//
// (big endian), so a write torn by a crash is found (short or bad-checksum
// frame) and cut off when the buffer is opened.
//
// Append fsyncs before it returns: a record the Buffer accepted survives a
// crash or power loss. The read position (the "head" file) is written
// without fsync after every pop batch; a crash can roll it back a little,
// which resends those records (at least once, never lost).
//
// The Buffer is bounded: when an append would take the segment files past
// maxBytes, the oldest segments are deleted first, and every unread record
// in them is reported to onDrop with reason "buffer_full" (the Forwarder
// counts it in kubeup_log_entries_dropped_total). Losing the oldest lines
// keeps the most recent ones, which are what someone debugging a machine
// needs, and bounds the disk a long aggregator outage can take.
//
// A Buffer is not safe for concurrent use: the Forwarder's loop owns it.
type Buffer struct {
	dir      string
	maxBytes int64
	segBytes int64
	onDrop   func(reason string, n int64)

	segs      []*segment // oldest first; the last one is appended to
	nextID    uint64     // id of the next segment
	head      int64      // read offset in segs[0]
	headCount int64      // records of segs[0] before head
	tail      *os.File   // segs[len-1], open for append
	reader    *os.File   // segs[0], open for reading
	readerID  uint64
	window    []byte // read cache of reader at windowOff
	windowOff int64
	peeked    int64 // frame bytes of the records Peek or PeekBatch returned, 0 if none
	peekedN   int64 // and their number

	records int64 // unread records
	bytes   int64 // size of all segment files
}

type segment struct {
	id      uint64
	size    int64
	records int64 // valid frames in the file
}

const (
	frameHeader  = 8
	maxFrame     = 64 << 20
	frameVersion = 1
	headFile     = "head"
	segSuffix    = ".seg"
	readWindow   = 64 << 10
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// Drop reasons of kubeup_log_entries_dropped_total.
const (
	DropBufferFull = "buffer_full" // the oldest segment was deleted to stay within the bound
	DropCorrupt    = "corrupt"     // an unreadable frame in the buffer (a disk error)
	DropTooLarge   = "too_large"   // one record larger than the whole buffer or a journal line past the limit
)

// SegmentBytes is the segment size for a bound: a sixteenth of it, between
// 64 KiB and 16 MiB, so dropping the oldest segment loses a small share.
func SegmentBytes(maxBytes int64) int64 {
	return min(max(maxBytes/16, 64<<10), 16<<20)
}

// OpenBuffer opens (creating it if needed) the buffer in dir, bounded by
// maxBytes. It scans the segments to count their records and cuts a torn
// frame off the newest one.
func OpenBuffer(dir string, maxBytes int64, onDrop func(reason string, n int64)) (*Buffer, error) {
	if maxBytes <= 0 {
		return nil, fmt.Errorf("log buffer %s: bound must be positive, got %d", dir, maxBytes)
	}
	if onDrop == nil {
		onDrop = func(string, int64) {}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("log buffer: %w", err)
	}
	b := &Buffer{dir: dir, maxBytes: maxBytes, segBytes: SegmentBytes(maxBytes), onDrop: onDrop}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("log buffer: %w", err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, segSuffix) {
			continue
		}
		id, err := strconv.ParseUint(strings.TrimSuffix(name, segSuffix), 10, 64)
		if err != nil {
			continue
		}
		b.segs = append(b.segs, &segment{id: id})
	}
	slices.SortFunc(b.segs, func(x, y *segment) int { return cmpUint(x.id, y.id) })

	headID, headOff := b.readHead()
	b.nextID = max(headID, 1)
	if len(b.segs) > 0 {
		b.nextID = max(b.nextID, b.segs[len(b.segs)-1].id+1)
	}
	// Segments older than the head were read to the end; their deletion
	// did not happen before the agent stopped.
	for len(b.segs) > 0 && b.segs[0].id < headID {
		os.Remove(b.segPath(b.segs[0].id))
		b.segs = b.segs[1:]
	}
	for i, s := range b.segs {
		last := i == len(b.segs)-1
		var upTo int64 = -1
		if i == 0 && s.id == headID {
			upTo = headOff
		}
		if err := b.scan(s, last, upTo); err != nil {
			return nil, err
		}
		b.bytes += s.size
		b.records += s.records
	}
	if len(b.segs) > 0 {
		b.records -= b.headCount
	}
	if len(b.segs) > 0 && b.records == 0 {
		// Everything was read: start clean.
		if err := b.reset(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// scan counts a segment's valid frames. For the newest segment a torn or
// corrupt frame and everything after it is cut off (a crash mid-append);
// in an older one the rest of the file is unreadable and is skipped when
// read. upTo >= 0 is the saved head offset within this segment.
func (b *Buffer) scan(s *segment, last bool, upTo int64) error {
	path := b.segPath(s.id)
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("log buffer: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("log buffer: %w", err)
	}
	r := newFrameReader(bufio.NewReaderSize(f, readWindow))
	var off int64
	for {
		if upTo >= 0 && off == upTo {
			b.head, b.headCount = off, s.records
		}
		n, err := r.next()
		if err != nil {
			break
		}
		off += n
		s.records++
	}
	if upTo >= 0 && off < upTo {
		// The saved head is past the valid frames: nothing is left.
		b.head, b.headCount = off, s.records
	}
	s.size = st.Size()
	if off < st.Size() {
		if last {
			if err := os.Truncate(path, off); err != nil {
				return fmt.Errorf("log buffer: cut torn frame: %w", err)
			}
			s.size = off
		}
	}
	return nil
}

// Len returns the unread records and the bytes the segment files take.
func (b *Buffer) Len() (records, bytes int64) { return b.records, b.bytes }

// Empty reports whether every record was read.
func (b *Buffer) Empty() bool { return b.records == 0 }

// Append writes records at the end and fsyncs them; only then are they
// the Buffer's. To stay within the bound it first deletes the oldest
// segments (counting their unread records as dropped).
func (b *Buffer) Append(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	var data []byte
	sizes := make([]int64, len(recs))
	for i, r := range recs {
		n := len(data)
		data = appendFrame(data, r)
		sizes[i] = int64(len(data) - n)
	}
	// A batch larger than the whole bound keeps its newest records.
	skip := 0
	for total := int64(len(data)); total > b.maxBytes && skip < len(recs); skip++ {
		total -= sizes[skip]
	}
	if skip > 0 {
		var cut int64
		for _, s := range sizes[:skip] {
			cut += s
		}
		data = data[cut:]
		b.onDrop(DropTooLarge, int64(skip))
		recs = recs[skip:]
		if len(recs) == 0 {
			return nil
		}
	}
	need := int64(len(data))
	for b.bytes+need > b.maxBytes && len(b.segs) > 0 {
		if err := b.dropOldest(); err != nil {
			return err
		}
	}
	if b.tail == nil || b.segs[len(b.segs)-1].size+need > b.segBytes && b.segs[len(b.segs)-1].size > 0 {
		if err := b.rotate(); err != nil {
			return err
		}
	}
	s := b.segs[len(b.segs)-1]
	if _, err := b.tail.Write(data); err != nil {
		// A partial write is cut off at the next open; make this one's
		// position the file's real end so later frames stay aligned.
		b.tail.Truncate(s.size)
		b.tail.Seek(s.size, io.SeekStart)
		return fmt.Errorf("log buffer: append: %w", err)
	}
	if err := b.tail.Sync(); err != nil {
		b.tail.Truncate(s.size)
		b.tail.Seek(s.size, io.SeekStart)
		return fmt.Errorf("log buffer: fsync: %w", err)
	}
	s.size += need
	s.records += int64(len(recs))
	b.bytes += need
	b.records += int64(len(recs))
	return nil
}

// rotate starts a new segment (fsyncing the directory, so the new file's
// name is as durable as its content).
func (b *Buffer) rotate() error {
	id := b.nextID
	b.nextID++
	if b.tail != nil {
		b.tail.Close()
		b.tail = nil
	}
	f, err := os.OpenFile(b.segPath(id), os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("log buffer: new segment: %w", err)
	}
	if err := syncDir(b.dir); err != nil {
		f.Close()
		os.Remove(b.segPath(id))
		return fmt.Errorf("log buffer: new segment: %w", err)
	}
	b.tail = f
	b.segs = append(b.segs, &segment{id: id})
	return nil
}

// dropOldest deletes the oldest segment and counts its unread records.
func (b *Buffer) dropOldest() error {
	s := b.segs[0]
	lost := s.records - b.headCount
	if err := os.Remove(b.segPath(s.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("log buffer: drop oldest segment: %w", err)
	}
	b.closeReader()
	if len(b.segs) == 1 && b.tail != nil {
		b.tail.Close()
		b.tail = nil
	}
	b.segs = b.segs[1:]
	b.bytes -= s.size
	b.records -= lost
	b.head, b.headCount, b.peeked, b.peekedN = 0, 0, 0, 0
	if lost > 0 {
		b.onDrop(DropBufferFull, lost)
	}
	return nil
}

// Peek returns the oldest unread record, io.EOF when there is none. A
// frame that cannot be read (a disk error; appends are fsynced and torn
// tails cut at open) skips the rest of its segment and counts the records
// lost as "corrupt".
func (b *Buffer) Peek() (Record, error) {
	for {
		if b.records == 0 {
			return Record{}, io.EOF
		}
		s := b.segs[0]
		if b.head >= s.size || b.headCount >= s.records {
			if err := b.nextSegment(); err != nil {
				return Record{}, err
			}
			continue
		}
		frame, err := b.readFrame(s, b.head)
		if err != nil {
			lost := s.records - b.headCount
			if lost > 0 {
				b.onDrop(DropCorrupt, lost)
			}
			b.records -= lost
			b.headCount = s.records
			b.head = s.size
			continue
		}
		r, err := decodePayload(frame[frameHeader:])
		if err != nil {
			b.onDrop(DropCorrupt, 1)
			b.records--
			b.headCount++
			b.head += int64(len(frame))
			continue
		}
		b.peeked, b.peekedN = int64(len(frame)), 1
		return r, nil
	}
}

// PeekBatch returns the oldest unread record and, after it, as many of the
// records that follow it in the same segment as fit accepts: fit is
// offered each record in order, the oldest first, and the batch ends
// before the first one it refuses (the oldest is returned whatever fit
// says). It also ends at an unreadable frame, which the next Peek or
// PeekBatch meets at the head and skips as Peek does. io.EOF when there
// is no record.
func (b *Buffer) PeekBatch(fit func(Record) bool) ([]Record, error) {
	first, err := b.Peek()
	if err != nil {
		return nil, err
	}
	fit(first)
	batch := []Record{first}
	s := b.segs[0]
	off, count := b.head+b.peeked, b.headCount+1
	for off < s.size && count < s.records {
		frame, err := b.readFrame(s, off)
		if err != nil {
			break
		}
		r, err := decodePayload(frame[frameHeader:])
		if err != nil || !fit(r) {
			break
		}
		batch = append(batch, r)
		off += int64(len(frame))
		count++
	}
	b.peeked, b.peekedN = off-b.head, count-b.headCount
	return batch, nil
}

// Pop consumes the records Peek or PeekBatch returned.
func (b *Buffer) Pop() error {
	if b.peeked == 0 {
		return errors.New("log buffer: pop without peek")
	}
	b.head += b.peeked
	b.headCount += b.peekedN
	b.records -= b.peekedN
	b.peeked, b.peekedN = 0, 0
	if b.records == 0 {
		return b.reset()
	}
	return nil
}

// nextSegment deletes the fully read oldest segment.
func (b *Buffer) nextSegment() error {
	if len(b.segs) == 1 {
		return b.reset()
	}
	s := b.segs[0]
	b.closeReader()
	if err := os.Remove(b.segPath(s.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("log buffer: remove read segment: %w", err)
	}
	b.segs = b.segs[1:]
	b.bytes -= s.size
	b.head, b.headCount, b.peeked, b.peekedN = 0, 0, 0, 0
	return b.SaveHead()
}

// reset deletes every segment once all records are read, so an empty
// buffer is an empty directory.
func (b *Buffer) reset() error {
	b.closeReader()
	if b.tail != nil {
		b.tail.Close()
		b.tail = nil
	}
	var errs []error
	for _, s := range b.segs {
		if err := os.Remove(b.segPath(s.id)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	b.segs = nil
	b.head, b.headCount, b.peeked, b.peekedN, b.records, b.bytes = 0, 0, 0, 0, 0, 0
	// The head names the next segment, so no segment written later looks
	// older than the head and gets taken for one already read.
	if err := b.writeHead(b.nextID, 0); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("log buffer: %w", err)
	}
	return nil
}

// SaveHead records the read position (without fsync: a crash rolls it back
// a little, which repeats records rather than losing them).
func (b *Buffer) SaveHead() error {
	if len(b.segs) == 0 {
		return nil
	}
	return b.writeHead(b.segs[0].id, b.head)
}

func (b *Buffer) writeHead(id uint64, off int64) error {
	return writeFileAtomic(filepath.Join(b.dir, headFile), []byte(fmt.Sprintf("%d %d\n", id, off)), false)
}

func (b *Buffer) readHead() (uint64, int64) {
	data, err := os.ReadFile(filepath.Join(b.dir, headFile))
	if err != nil {
		return 0, 0
	}
	var id uint64
	var off int64
	if _, err := fmt.Sscanf(string(data), "%d %d", &id, &off); err != nil {
		return 0, 0
	}
	return id, off
}

// Close saves the read position and closes the files.
func (b *Buffer) Close() error {
	err := b.SaveHead()
	b.closeReader()
	if b.tail != nil {
		b.tail.Close()
		b.tail = nil
	}
	return err
}

func (b *Buffer) closeReader() {
	if b.reader != nil {
		b.reader.Close()
		b.reader = nil
	}
	b.window, b.windowOff = b.window[:0], 0
}

func (b *Buffer) segPath(id uint64) string {
	return filepath.Join(b.dir, fmt.Sprintf("%016d%s", id, segSuffix))
}

// readFrame returns the frame at off in s, header included, reading
// through a 64 KiB window so a drain does not cost a syscall per record.
func (b *Buffer) readFrame(s *segment, off int64) ([]byte, error) {
	if b.reader == nil || b.readerID != s.id {
		b.closeReader()
		f, err := os.Open(b.segPath(s.id))
		if err != nil {
			return nil, err
		}
		b.reader, b.readerID = f, s.id
	}
	hdr, err := b.readAt(off, frameHeader, s.size)
	if err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr)
	sum := binary.BigEndian.Uint32(hdr[4:])
	if n > maxFrame {
		return nil, fmt.Errorf("frame of %d bytes", n)
	}
	frame, err := b.readAt(off, frameHeader+int(n), s.size)
	if err != nil {
		return nil, err
	}
	if crc32.Checksum(frame[frameHeader:], crcTable) != sum {
		return nil, errors.New("checksum mismatch")
	}
	return frame, nil
}

func (b *Buffer) readAt(off int64, n int, size int64) ([]byte, error) {
	if off+int64(n) > size {
		return nil, io.ErrUnexpectedEOF
	}
	if off >= b.windowOff && off+int64(n) <= b.windowOff+int64(len(b.window)) {
		start := off - b.windowOff
		return b.window[start : start+int64(n)], nil
	}
	want := max(n, readWindow)
	want = int(min(int64(want), size-off))
	if cap(b.window) < want {
		b.window = make([]byte, want)
	}
	b.window = b.window[:want]
	got, err := b.reader.ReadAt(b.window, off)
	b.window, b.windowOff = b.window[:got], off
	if got < n {
		if err == nil {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	return b.window[:n], nil
}

func appendFrame(b []byte, r Record) []byte {
	start := len(b)
	b = append(b, make([]byte, frameHeader)...)
	b = append(b, frameVersion)
	b = binary.AppendUvarint(b, uint64(len(r.Tag)))
	b = append(b, r.Tag...)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixNano()))
	b = append(b, r.Body...)
	payload := b[start+frameHeader:]
	binary.BigEndian.PutUint32(b[start:], uint32(len(payload)))
	binary.BigEndian.PutUint32(b[start+4:], crc32.Checksum(payload, crcTable))
	return b
}

func decodePayload(p []byte) (Record, error) {
	if len(p) < 1 || p[0] != frameVersion {
		return Record{}, errors.New("unknown frame version")
	}
	p = p[1:]
	n, k := binary.Uvarint(p)
	if k <= 0 || uint64(len(p)-k) < n+8 {
		return Record{}, errors.New("short frame")
	}
	p = p[k:]
	tag := string(p[:n])
	p = p[n:]
	ns := int64(binary.BigEndian.Uint64(p))
	body := append([]byte(nil), p[8:]...)
	return Record{Tag: tag, Time: time.Unix(0, ns), Body: body}, nil
}

// frameReader walks frames sequentially (scanning at open).
type frameReader struct {
	r   io.Reader
	buf []byte
}

func newFrameReader(r io.Reader) *frameReader { return &frameReader{r: r} }

// next reads one valid frame and returns its length.
func (fr *frameReader) next() (int64, error) {
	var hdr [frameHeader]byte
	if _, err := io.ReadFull(fr.r, hdr[:]); err != nil {
		return 0, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxFrame || n == 0 {
		return 0, errors.New("bad frame length")
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	fr.buf = fr.buf[:n]
	if _, err := io.ReadFull(fr.r, fr.buf); err != nil {
		return 0, err
	}
	if crc32.Checksum(fr.buf, crcTable) != binary.BigEndian.Uint32(hdr[4:]) {
		return 0, errors.New("checksum mismatch")
	}
	if _, err := decodePayload(fr.buf); err != nil {
		return 0, err
	}
	return frameHeader + int64(n), nil
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
