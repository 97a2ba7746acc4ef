package cluster

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/config"
)

// tarFile writes a tar archive holding one file of size bytes.
func tarFile(t *testing.T, dir, name string, size int) string {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + strings.Repeat("a", 64), Mode: 0o644, Size: int64(size)})
	tw.Write(bytes.Repeat([]byte{'x'}, size))
	tw.Close()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Files are checked before anything else: a missing, unreadable or
// compressed one, or one that is not a tar, fails naming it, before the
// cluster is even looked up (so before any machine is reached).
func TestLoadImagesRefusesBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := tarFile(t, dir, "good.tar", 100)
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, data, 0o644)
		return p
	}
	goodData, _ := os.ReadFile(good)
	noRead := write("no-read.tar", goodData)
	os.Chmod(noRead, 0)
	for _, tc := range []struct {
		file, want string
	}{
		{filepath.Join(dir, "missing.tar"), "no such file"},
		{dir, "is not a file"},
		{write("notes.txt", []byte(strings.Repeat("not an archive\n", 100))), "is not a tar archive"},
		{write("short.tar", goodData[:300]), "is not a tar archive"},
		{write("empty.tar", nil), "is not a tar archive"},
		{write("zeros.tar", make([]byte, 1024)), "is not a tar archive"},
		{write("corrupt.tar", append([]byte{'X'}, goodData[1:]...)), "is not a tar archive"}, // checksum off
		{write("image.tar.gz", append([]byte{0x1f, 0x8b, 8, 0}, goodData...)), "gzip-compressed"},
		{write("image.tar.zst", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, goodData...)), "zstd-compressed"},
		{noRead, "permission denied"},
	} {
		if tc.file == noRead && os.Geteuid() == 0 {
			continue // root reads it anyway
		}
		err := LoadImages(context.Background(), dir, "nope", []string{good, tc.file}, ImageTargets{}, false, io.Discard)
		if !errors.Is(err, ErrBadArchive) || !strings.Contains(err.Error(), tc.file) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v naming it with %q", tc.file, err, ErrBadArchive, tc.want)
		}
	}
	if err := LoadImages(context.Background(), dir, "nope", nil, ImageTargets{}, false, io.Discard); !errors.Is(err, ErrBadArchive) {
		t.Errorf("no file: %v", err)
	}
	// Good files: past the check, the cluster is looked up.
	if err := LoadImages(context.Background(), dir, "nope", []string{good, tarFile(t, dir, "big.tar", 1<<20)}, ImageTargets{}, false, io.Discard); !errors.Is(err, ErrNotFound) {
		t.Errorf("good files, no cluster: %v", err)
	}
}

// fakeImageAgent checks that what it receives is the file itself,
// streamed (an open file, not a copy in memory), whole.
type fakeImageAgent struct {
	machine  string
	fail     error
	inFlight *atomic.Int32
	maxSeen  *atomic.Int32
	mu       sync.Mutex
	got      []string // "file size pin"
}

func (a *fakeImageAgent) ImportImages(_ context.Context, r io.Reader, size int64, pin bool) (*agent.ImportResult, error) {
	n := a.inFlight.Add(1)
	defer a.inFlight.Add(-1)
	for m := a.maxSeen.Load(); n > m && !a.maxSeen.CompareAndSwap(m, n); m = a.maxSeen.Load() {
	}
	f, ok := r.(*os.File)
	if !ok {
		return nil, fmt.Errorf("body is a %T, not the open file", r)
	}
	want, _ := os.ReadFile(f.Name())
	time.Sleep(20 * time.Millisecond) // machines overlap
	data, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(data, want) || int64(len(data)) != size {
		return nil, fmt.Errorf("received %d bytes (%v), size %d, file %d bytes", len(data), err, size, len(want))
	}
	a.mu.Lock()
	a.got = append(a.got, fmt.Sprintf("%s %d %v", filepath.Base(f.Name()), size, pin))
	a.mu.Unlock()
	if a.fail != nil {
		return nil, a.fail
	}
	return &agent.ImportResult{Machine: a.machine, Pinned: pin, Bytes: size,
		Images: []agent.ImportedImage{{Ref: "registry.kubeup.dev/" + strings.TrimSuffix(filepath.Base(f.Name()), ".tar") + ":1"}}}, nil
}

func newTestImageLoad(machines ...string) (*imageLoad, map[string]*fakeImageAgent, *bytes.Buffer, *atomic.Int32) {
	var out bytes.Buffer
	var inFlight, maxSeen atomic.Int32
	agents := map[string]*fakeImageAgent{}
	for _, m := range machines {
		agents[m] = &fakeImageAgent{machine: m, inFlight: &inFlight, maxSeen: &maxSeen}
	}
	l := &imageLoad{machines: machines, progress: &out, now: time.Now,
		connect: func(_ context.Context, m string) (imageAgent, error) {
			if agents[m] == nil {
				return nil, errors.New("connection refused")
			}
			return agents[m], nil
		}}
	return l, agents, &out, &maxSeen
}

// Every archive reaches every machine, streamed whole, two machines at a
// time at most, with a progress line each.
func TestImageLoadStreamsEveryArchiveToEveryMachine(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := []string{tarFile(t, dir, "testbox.tar", 2<<20), tarFile(t, dir, "conformance.tar", 3000)}
	archives, err := checkImageArchives(files)
	if err != nil {
		t.Fatal(err)
	}
	machines := []string{"master-0", "node-0", "node-1", "node-2"}
	l, agents, out, maxSeen := newTestImageLoad(machines...)
	if err := l.run(context.Background(), archives, true); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, m := range machines {
		want := fmt.Sprintf("[testbox.tar %d true conformance.tar %d true]", archives[0].size, archives[1].size)
		if got := fmt.Sprint(agents[m].got); got != want {
			t.Errorf("%s received %s, want %s", m, got, want)
		}
		for i, f := range files {
			line := fmt.Sprintf("  %s: %s: registry.kubeup.dev/%s:1 (pinned) (%.1f MB in ", m, f, strings.TrimSuffix(filepath.Base(f), ".tar"), float64(archives[i].size)/1e6)
			if !strings.Contains(out.String(), line) {
				t.Errorf("no progress line %q in\n%s", line, out)
			}
		}
	}
	if n := maxSeen.Load(); n != imageLoadParallel {
		t.Errorf("%d machines at once, want %d", n, imageLoadParallel)
	}
	if !strings.Contains(out.String(), "2 archives loaded on 4 machines in ") {
		t.Errorf("no summary in\n%s", out)
	}
}

// A machine whose agent refuses an archive gets no further one, a machine
// whose agent cannot be reached none; the others get everything, and the
// error names each failure's machine and file.
func TestImageLoadFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	files := []string{tarFile(t, dir, "a.tar", 10), tarFile(t, dir, "b.tar", 10)}
	archives, _ := checkImageArchives(files)
	l, agents, out, _ := newTestImageLoad("master-0", "node-0")
	l.machines = append(l.machines, "node-1") // no agent
	agents["master-0"].fail = errors.New("422 Unprocessable Entity: ctr: content digest sha256:0123: not found")
	err := l.run(context.Background(), archives, false)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"master-0: " + files[0] + ": 422", "node-1: connection refused"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "node-0") {
		t.Errorf("error names node-0, which loaded everything: %v", err)
	}
	if got := fmt.Sprint(agents["master-0"].got); got != "[a.tar 2048 false]" {
		t.Errorf("master-0 received %s, want a.tar only (it failed on it)", got)
	}
	if n := len(agents["node-0"].got); n != 2 {
		t.Errorf("node-0 received %d archives, want 2", n)
	}
	if !strings.Contains(out.String(), "master-0: "+files[0]+": FAILED after ") || strings.Contains(out.String(), "archives loaded") {
		t.Errorf("progress:\n%s", out)
	}
}

// Targets: every machine by default, else the ones named and the role's,
// in the state's order; a name the cluster lacks, or a role it has none
// of, is ErrNoTarget naming it and the machines there are.
func TestImageTargets(t *testing.T) {
	t.Parallel()
	st := &State{Name: "demo", Machines: []MachineState{
		{Name: "master-0", Role: config.RoleMaster}, {Name: "node-0", Role: config.RoleNode}, {Name: "node-1", Role: config.RoleNode}}}
	for _, tc := range []struct {
		t    ImageTargets
		want string
		err  string
	}{
		{ImageTargets{}, "master-0 node-0 node-1", ""},
		{ImageTargets{Role: config.RoleNode}, "node-0 node-1", ""},
		{ImageTargets{Role: config.RoleMaster}, "master-0", ""},
		{ImageTargets{Machines: []string{"node-1", "master-0"}}, "master-0 node-1", ""},
		{ImageTargets{Machines: []string{"master-0"}, Role: config.RoleNode}, "master-0 node-0 node-1", ""},
		{ImageTargets{Machines: []string{"node-0", "node-7"}}, "", `--machine "node-7": cluster "demo" has master-0, node-0, node-1`},
	} {
		got, err := tc.t.Pick(st)
		if tc.err != "" {
			if !errors.Is(err, ErrNoTarget) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want ErrNoTarget with %q", tc.t, err, tc.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("%+v: %v %v, want %s", tc.t, got, err, tc.want)
		}
	}
	onlyMasters := &State{Name: "solo", Machines: []MachineState{{Name: "master-0", Role: config.RoleMaster}}}
	if _, err := (ImageTargets{Role: config.RoleNode}).Pick(onlyMasters); !errors.Is(err, ErrNoTarget) || !strings.Contains(err.Error(), `--role node: cluster "solo" has no node`) {
		t.Errorf("no node: %v", err)
	}
}
