package agent

import (
	"context"
	"io"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
	before, after, err := releaseStartupMemory()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before %s, after %s", before, after)
	if before.File == 0 || after.File >= before.File {
		t.Errorf("file-backed memory %d → %d bytes: not released", before.File, after.File)
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
