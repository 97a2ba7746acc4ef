package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Start-up memory.
//
// A Go daemon's resident set is mostly its own binary: the kernel maps the
// pages a process touches, and 64 KiB around each (fault-around), from a
// page cache that read-ahead filled with nearly the whole file. Most of
// those pages served only start-up — package initialisation (scheme,
// protobuf and metric registrations), flag and configuration parsing, the
// first TLS handshakes — and are never touched again. releaseStartupMemory
// hands them back, as the kernel frees its __init sections after boot:
//   - the read-only mappings of the executable are paged out (MADV_PAGEOUT,
//     which also drops them from the page cache, so the memory is freed);
//   - the rest of the binary is dropped from the page cache
//     (POSIX_FADV_DONTNEED), or fault-around would map it again;
//   - the mappings are marked for random access (MADV_RANDOM: no
//     read-around, so what comes back is what is used);
//   - the heap the garbage collector freed goes back to the kernel.
// The pages the agent goes on using come back on their next touch, one by
// one, from the disk.

// MemoryUsage is a process's resident memory, from /proc/<pid>/status.
type MemoryUsage struct {
	// File is resident memory backed by files (the mapped binary).
	File int64
	// Anon is anonymous resident memory (heap, stacks, runtime).
	Anon int64
}

// Total is the resident set size.
func (m MemoryUsage) Total() int64 { return m.File + m.Anon }

func (m MemoryUsage) String() string {
	return fmt.Sprintf("%.1f MB (file %.1f, anon %.1f)", float64(m.Total())/1e6, float64(m.File)/1e6, float64(m.Anon)/1e6)
}

// ReadMemoryUsage reads the current process's resident memory.
func ReadMemoryUsage() (MemoryUsage, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return MemoryUsage{}, err
	}
	var m MemoryUsage
	found := 0
	for line := range strings.SplitSeq(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var dst *int64
		switch key {
		case "RssFile":
			dst = &m.File
		case "RssAnon":
			dst = &m.Anon
		default:
			continue
		}
		f := strings.Fields(val) // "1234 kB"
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("/proc/self/status: unexpected %s line %q", key, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("/proc/self/status: %s: %w", key, err)
		}
		*dst = kb << 10
		found++
	}
	if found != 2 {
		return m, errors.New("/proc/self/status has no RssFile/RssAnon lines")
	}
	return m, nil
}

// mapping is one line of /proc/self/maps.
type mapping struct {
	start, end uintptr
	perms      string
	inode      uint64
	path       string
}

// executableMappings returns the read-only mappings of the running
// executable (text, rodata, the pcln table): its writable data is
// anonymous memory once written, and paging it out would need swap.
func executableMappings() ([]mapping, error) {
	var exe unix.Stat_t
	if err := unix.Stat("/proc/self/exe", &exe); err != nil {
		return nil, fmt.Errorf("stat /proc/self/exe: %w", err)
	}
	data, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	var out []mapping
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		m, ok := parseMapping(sc.Text())
		if !ok || m.inode != exe.Ino || len(m.perms) < 2 || m.perms[1] == 'w' {
			continue
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// parseMapping parses "start-end perms offset dev inode path".
func parseMapping(line string) (mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 6 {
		return mapping{}, false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	inode, err3 := strconv.ParseUint(f[4], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || end <= start {
		return mapping{}, false
	}
	return mapping{start: uintptr(start), end: uintptr(end), perms: f[1], inode: inode, path: strings.Join(f[5:], " ")}, true
}

func madvise(m mapping, advice int) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, uintptr(advice)); e != 0 {
		return fmt.Errorf("madvise(%d) %s %x-%x: %w", advice, m.path, m.start, m.end, e)
	}
	return nil
}

// releaseStartupMemory pages out the executable's read-only mappings,
// drops the rest of it from the page cache and returns freed heap to the
// kernel; it reports the resident memory before and after.
func releaseStartupMemory() (before, after MemoryUsage, err error) {
	before, err = ReadMemoryUsage()
	if err != nil {
		return before, before, err
	}
	maps, err := executableMappings()
	if err != nil {
		return before, before, err
	}
	if len(maps) == 0 {
		return before, before, errors.New("no mapping of the executable in /proc/self/maps")
	}
	exe, err := os.Open("/proc/self/exe")
	if err != nil {
		return before, before, err
	}
	defer exe.Close()
	// Only clean pages can be reclaimed: a binary installed a moment ago
	// may not be written back yet.
	if err := unix.Fdatasync(int(exe.Fd())); err != nil {
		return before, before, fmt.Errorf("fdatasync %s: %w", exe.Name(), err)
	}
	for _, m := range maps {
		// Random access from now on: a page faulted back in is read alone,
		// not with the 128 KiB of read-around that would bring the paged-out
		// start-up code back into the page cache (and, through fault-around,
		// into the process).
		if err := madvise(m, unix.MADV_RANDOM); err != nil {
			return before, before, err
		}
		err := madvise(m, unix.MADV_PAGEOUT)
		if errors.Is(err, unix.EINVAL) {
			// Kernels before 5.4: unmap the pages from the process at
			// least; they stay in the page cache.
			err = madvise(m, unix.MADV_DONTNEED)
		}
		if err != nil {
			return before, before, err
		}
	}
	// Pages of the binary that are in the page cache but were not mapped
	// (read-ahead brought nearly the whole file in at start) would be
	// mapped again by fault-around: drop them from the cache too.
	if err := unix.Fadvise(int(exe.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return before, before, fmt.Errorf("fadvise %s: %w", exe.Name(), err)
	}
	debug.FreeOSMemory()
	after, err = ReadMemoryUsage()
	return before, after, err
}

// memoryRelease is the task that releases start-up memory: once a first
// boot is over (5 min: the cluster has formed, the agent's waiting and
// bootstrap paths have run, and the release no longer competes with the
// boot for the disk), again 5 min later, then every 15 minutes:
// rarely used paths (a reconnect, an error, a certificate rescan) would
// otherwise keep adding pages, about 0.05 MB a minute on a master. What
// the agent really uses, about 9 MB on a master, is read back each time:
// some 2,300 page reads spread over the following minutes.
type memoryRelease struct {
	log      *slog.Logger
	release  func() (before, after MemoryUsage, err error)
	schedule []time.Duration // the wait before each release; the last repeats
	released prometheus.Counter
}

// memoryReleaseSchedule: 5 and 10 min after start (a first boot's cluster
// forms in about 4 min under TCG), then every 15 min.
var memoryReleaseSchedule = []time.Duration{5 * time.Minute, 5 * time.Minute, 15 * time.Minute}

func newMemoryRelease(log *slog.Logger) *memoryRelease {
	return &memoryRelease{
		log: log, release: releaseStartupMemory, schedule: memoryReleaseSchedule,
		released: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeup_agent_memory_released_bytes_total",
			Help: "Resident memory the agent gave back to the kernel: pages of its binary only start-up touched, and freed heap.",
		}),
	}
}

func (m *memoryRelease) Name() string { return "memory-release" }

func (m *memoryRelease) Run(ctx context.Context) error {
	for i := 0; ; i++ {
		wait := m.schedule[min(i, len(m.schedule)-1)]
		if err := sleepCtx(ctx, wait); err != nil {
			return nil
		}
		before, after, err := m.release()
		if err != nil {
			m.log.Warn("cannot release start-up memory", "err", err)
			continue
		}
		if freed := before.Total() - after.Total(); freed > 0 {
			m.released.Add(float64(freed))
		}
		m.log.Info("released start-up memory", "before", before.String(), "after", after.String())
	}
}
