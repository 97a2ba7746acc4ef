package agent

import (
	"context"
	"io"
	"log/slog"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/sys/unix"
)

func TestParseMapping(t *testing.T) {
	m, ok := parseMapping("00400000-00c5b000 r-xp 00000000 fe:01 1234567                    /usr/local/bin/kubeup agent")
	if !ok || m.start != 0x400000 || m.end != 0xc5b000 || m.perms != "r-xp" || m.inode != 1234567 || m.path != "/usr/local/bin/kubeup agent" {
		t.Errorf("parsed %+v, %v", m, ok)
	}
	for _, bad := range []string{"", "7ffd1000-7ffd2000 rw-p 00000000 00:00 0", "zz-10 r-xp 0 00:00 1 /x", "2000-1000 r-xp 0 00:00 1 /x"} {
		if m, ok := parseMapping(bad); ok && m.path != "" {
			t.Errorf("%q parsed as %+v", bad, m)
		}
	}
}

// The real thing on this test binary: its code is found among the
// executable's read-only mappings, releasing drops file-backed resident
// memory, and the process runs on (the pages come back when touched).
func TestReleaseStartupMemory(t *testing.T) {
	maps, err := executableMappings()
	if err != nil {
		t.Fatal(err)
	}
	pc := reflect.ValueOf(TestReleaseStartupMemory).Pointer()
	found := false
	for _, m := range maps {
		if m.perms[1] == 'w' {
			t.Errorf("writable mapping %+v listed", m)
		}
		if pc >= m.start && pc < m.end {
			found = true
		}
	}
	if !found {
		t.Fatalf("this function (%#x) is in none of the executable's mappings %+v", pc, maps)
	}
	cachedBefore := cachedPages(t, "/proc/self/exe")
	before, after, err := releaseStartupMemory()
	if err != nil {
		t.Fatal(err)
	}
	// The binary left the page cache (but for what ran since).
	cachedAfter := cachedPages(t, "/proc/self/exe")
	t.Logf("pages of the binary in the page cache: %d before, %d after", cachedBefore, cachedAfter)
	if cachedAfter*2 > cachedBefore {
		t.Errorf("%d of %d cached pages of the binary left in the page cache", cachedAfter, cachedBefore)
	}
	t.Logf("before %s, after %s", before, after)
	if before.File == 0 || after.File >= before.File {
		t.Errorf("file-backed memory %d → %d bytes: not released", before.File, after.File)
	}
	// Every mapping of the executable is marked for random access now.
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var cur uint64 // start of the mapping whose fields follow
	marked := 0
	for _, line := range strings.Split(string(smaps), "\n") {
		if lo, _, ok := strings.Cut(strings.Fields(line + " x")[0], "-"); ok {
			if start, err := strconv.ParseUint(lo, 16, 64); err == nil {
				cur = start
				continue
			}
		}
		if flags, ok := strings.CutPrefix(line, "VmFlags:"); ok {
			for _, m := range maps {
				if uint64(m.start) == cur {
					if !slices.Contains(strings.Fields(flags), "rr") {
						t.Errorf("mapping %x-%x not marked for random access: %s", m.start, m.end, flags)
					}
					marked++
				}
			}
		}
	}
	if marked != len(maps) {
		t.Errorf("%d of %d mappings found in smaps", marked, len(maps))
	}
	// Still alive: code and data come back.
	if u, err := ReadMemoryUsage(); err != nil || u.Total() == 0 {
		t.Errorf("after release: %v, %v", u, err)
	}
}

func TestMemoryReleaseSchedule(t *testing.T) {
	calls := make(chan time.Time, 10)
	m := newMemoryRelease(slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.schedule = []time.Duration{time.Millisecond, 5 * time.Millisecond}
	m.release = func() (MemoryUsage, MemoryUsage, error) {
		calls <- time.Now()
		return MemoryUsage{File: 10 << 20, Anon: 5 << 20}, MemoryUsage{File: 4 << 20, Anon: 5 << 20}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	for range 3 {
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatal("release not called on schedule")
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if got := testutil.ToFloat64(m.released); got < 3*(6<<20) {
		t.Errorf("released counter %v, want at least 3 × 6 MiB", got)
	}
}

// cachedPages counts a file's pages in the page cache (mincore on a fresh
// mapping: it reports the cache, whatever this mapping touched).
func cachedPages(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(fi.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(data)
	vec := make([]byte, (len(data)+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, e := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&data[0])), uintptr(len(data)), uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		t.Fatal("mincore: ", e)
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
