package logforward

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func rec(i int) Record {
	return Record{Tag: JournalTag, Time: time.Unix(1767225600, int64(i)), Body: EncodeJournal(nil, Origin{Machine: "m"},
		JournalFields{Message: fmt.Sprintf("line %05d", i), Unit: "kubeup", Priority: 6})}
}

func recs(from, n int) []Record {
	var out []Record
	for i := from; i < from+n; i++ {
		out = append(out, rec(i))
	}
	return out
}

func msgOf(t testing.TB, r Record) string {
	t.Helper()
	f, err := DecodeFields(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return f["message"].(string)
}

// drainBuffer pops every record, returning their messages.
func drainBuffer(t *testing.T, b *Buffer) []string {
	t.Helper()
	var out []string
	for {
		r, err := b.Peek()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, msgOf(t, r))
		if err := b.Pop(); err != nil {
			t.Fatal(err)
		}
	}
}

func wantLines(from, n int) []string {
	var out []string
	for i := from; i < from+n; i++ {
		out = append(out, fmt.Sprintf("line %05d", i))
	}
	return out
}

func TestBufferOrderAndReopen(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBuffer(dir, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 300; i += 100 {
		if err := b.Append(recs(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	if n, bytes := b.Len(); n != 300 || bytes == 0 {
		t.Fatalf("len %d records %d bytes", n, bytes)
	}
	// Read some, then "restart the agent".
	for range 120 {
		r, err := b.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !r.Time.Equal(time.Unix(1767225600, 0)) && r.Tag != JournalTag {
			t.Fatalf("record %+v", r)
		}
		b.Pop()
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b, err = OpenBuffer(dir, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Len(); n != 180 {
		t.Fatalf("after reopen: %d records, want 180", n)
	}
	if err := b.Append(recs(300, 10)); err != nil {
		t.Fatal(err)
	}
	if got := drainBuffer(t, b); !slices.Equal(got, wantLines(120, 190)) {
		t.Errorf("read %d records %q..., want 120..309 in order", len(got), got[:min(3, len(got))])
	}
	// Empty: no segment files left behind, and new records still work.
	if segs := segFiles(t, dir); len(segs) != 0 {
		t.Errorf("segments left: %v", segs)
	}
	b.Append(recs(400, 1))
	b.Close()
	b, _ = OpenBuffer(dir, 1<<20, nil)
	if got := drainBuffer(t, b); !slices.Equal(got, wantLines(400, 1)) {
		t.Errorf("after an emptied buffer: %q", got)
	}
}

func segFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	return m
}

// A crash mid-append leaves a torn frame: it is cut off at open, the
// records before it survive and new ones follow.
func TestBufferTornTail(t *testing.T) {
	dir := t.TempDir()
	b, _ := OpenBuffer(dir, 1<<20, nil)
	b.Append(recs(0, 10))
	b.Close()
	segs := segFiles(t, dir)
	f, _ := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	f.Write(appendFrame(nil, rec(10))[:20]) // half a frame
	f.Close()

	b, err := OpenBuffer(dir, 1<<20, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := b.Len(); n != 10 {
		t.Errorf("%d records after a torn write, want 10", n)
	}
	b.Append(recs(11, 2))
	got := drainBuffer(t, b)
	want := append(wantLines(0, 10), wantLines(11, 2)...)
	if !slices.Equal(got, want) {
		t.Errorf("got %q", got)
	}
}

// The bound: appends past it delete the oldest segment, and every record
// in it is counted as dropped; the newest records are kept, in order.
func TestBufferBoundDropsOldest(t *testing.T) {
	dir := t.TempDir()
	dropped := map[string]int64{}
	const max = 256 << 10 // segments of 64 KiB
	b, err := OpenBuffer(dir, max, func(reason string, n int64) { dropped[reason] += n })
	if err != nil {
		t.Fatal(err)
	}
	const total = 10000
	for i := 0; i < total; i += 50 {
		if err := b.Append(recs(i, 50)); err != nil {
			t.Fatal(err)
		}
		if _, bytes := b.Len(); bytes > max {
			t.Fatalf("buffer at %d bytes, bound %d", bytes, max)
		}
	}
	kept, _ := b.Len()
	if dropped[DropBufferFull] == 0 || dropped[DropBufferFull]+kept != total {
		t.Fatalf("kept %d + dropped %d != %d", kept, dropped[DropBufferFull], total)
	}
	// Reading part of the oldest segment before it is dropped: only the
	// unread records count.
	for range 10 {
		b.Peek()
		b.Pop()
	}
	before := dropped[DropBufferFull]
	n, _ := b.Len()
	last := total - 1
	for i := total; ; i += 50 {
		b.Append(recs(i, 50))
		last = i + 49
		if dropped[DropBufferFull] > before {
			after, _ := b.Len()
			if got := dropped[DropBufferFull] - before; got != n+50-after {
				t.Errorf("dropped %d, want %d", got, n+50-after)
			}
			break
		}
		n += 50
	}
	got := drainBuffer(t, b)
	for i := 1; i < len(got); i++ {
		if got[i] <= got[i-1] {
			t.Fatalf("out of order at %d: %s after %s", i, got[i], got[i-1])
		}
	}
	if want := fmt.Sprintf("line %05d", last); got[len(got)-1] != want {
		t.Errorf("last record %s, want %s", got[len(got)-1], want)
	}
}

// A corrupt frame in an older segment (a disk error) skips the rest of
// that segment, counting what is lost.
func TestBufferCorruptSegment(t *testing.T) {
	dir := t.TempDir()
	dropped := map[string]int64{}
	b, _ := OpenBuffer(dir, 1<<20, func(reason string, n int64) { dropped[reason] += n })
	b.Append(recs(0, 10))
	b.Close()
	b, _ = OpenBuffer(dir, 1<<20, func(reason string, n int64) { dropped[reason] += n })
	b.Append(recs(10, 10)) // a new segment
	segs := segFiles(t, dir)
	if len(segs) != 2 {
		t.Fatalf("segments %v", segs)
	}
	// Flip a byte in the fourth frame of the first segment.
	data, _ := os.ReadFile(segs[0])
	frame := len(appendFrame(nil, rec(0)))
	data[3*frame+frameHeader+5] ^= 0xff
	os.WriteFile(segs[0], data, 0o600)

	got := drainBuffer(t, b)
	want := append(wantLines(0, 3), wantLines(10, 10)...)
	if !slices.Equal(got, want) || dropped[DropCorrupt] != 7 {
		t.Errorf("got %q, dropped %v", got, dropped)
	}
}

// PeekBatch returns runs of one tag within a segment, as fit allows; Pop
// consumes the whole batch, and a reopen resumes after it. A corrupt frame
// ends a batch; the next one skips it as Peek does.
func TestBufferPeekBatch(t *testing.T) {
	dir := t.TempDir()
	dropped := map[string]int64{}
	onDrop := func(reason string, n int64) { dropped[reason] += n }
	b, err := OpenBuffer(dir, 256<<10, onDrop) // segments of 64 KiB
	if err != nil {
		t.Fatal(err)
	}
	all := runs(0, run{JournalTag, 300}, run{PodTag, 40}, run{JournalTag, 700})
	for i := 0; i < len(all); i += 100 {
		if err := b.Append(all[i:min(i+100, len(all))]); err != nil {
			t.Fatal(err)
		}
	}
	segs := segFiles(t, dir)
	if len(segs) < 2 {
		t.Fatalf("segments %v", segs)
	}
	var got []string
	var sizes []int
	next := func() bool {
		var size batchSizer
		batch, err := b.PeekBatch(size.fit)
		if errors.Is(err, io.EOF) {
			return false
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) > batchMaxRecords {
			t.Fatalf("batch of %d", len(batch))
		}
		for _, r := range batch {
			if r.Tag != batch[0].Tag {
				t.Fatalf("tags %s and %s in one batch", batch[0].Tag, r.Tag)
			}
			got = append(got, msgOf(t, r))
		}
		sizes = append(sizes, len(batch))
		if err := b.Pop(); err != nil {
			t.Fatal(err)
		}
		return true
	}
	next()
	next()
	if n, _ := b.Len(); int(n) != len(all)-len(got) {
		t.Fatalf("%d left after %d read", n, len(got))
	}
	b.Close()
	b, err = OpenBuffer(dir, 256<<10, onDrop)
	if err != nil {
		t.Fatal(err)
	}
	for next() {
	}
	if !slices.Equal(got, wantLines(0, len(all))) {
		t.Errorf("read %d records; first out of place %s", len(got), firstDiff(got, wantLines(0, len(all))))
	}
	// Fewer batches than records: runs are only cut by tag, size and
	// segment ends.
	if len(sizes) > 2+len(segs)+2 {
		t.Errorf("batches %v over %d segments", sizes, len(segs))
	}
	if segs := segFiles(t, dir); len(segs) != 0 {
		t.Errorf("segments left: %v", segs)
	}

	// A corrupt fourth frame: the first batch is the three before it, the
	// rest of that segment is dropped, the next segment follows.
	b.Append(recs(0, 10))
	b.Close()
	b, _ = OpenBuffer(dir, 256<<10, onDrop)
	b.Append(recs(10, 10))
	segs = segFiles(t, dir)
	data, _ := os.ReadFile(segs[0])
	frame := len(appendFrame(nil, rec(0)))
	data[3*frame+frameHeader+5] ^= 0xff
	os.WriteFile(segs[0], data, 0o600)
	got, sizes = nil, nil
	for next() {
	}
	if want := append(wantLines(0, 3), wantLines(10, 10)...); !slices.Equal(got, want) || !slices.Equal(sizes, []int{3, 10}) ||
		dropped[DropCorrupt] != 7 {
		t.Errorf("got %q in batches %v, dropped %v", got, sizes, dropped)
	}
}
