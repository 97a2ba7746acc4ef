package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/config"
)

// ErrBadArchive: a file given to LoadImages is missing, unreadable or not
// a tar archive; nothing was sent to any machine.
var ErrBadArchive = errors.New("bad image archive")

// ErrNoTarget: LoadImages' targets name a machine the cluster does not
// have, or select none; nothing was sent to any machine.
var ErrNoTarget = errors.New("no such machine")

// ImageTargets selects the machines LoadImages loads: every machine when
// both are empty, else the machines named and those of the role (as kind's
// `load docker-image --nodes`). Pods that need an image only where they
// run: the conformance suite's land on nodes only (masters are tainted
// NoSchedule), so its archive goes to the nodes alone.
type ImageTargets struct {
	Machines []string
	Role     config.Role
}

// Pick returns the selected machines in the state's order, or
// ErrNoTarget naming a machine that is not there, or the role with none.
func (t ImageTargets) Pick(st *State) ([]string, error) {
	var all, out []string
	for _, m := range st.Machines {
		all = append(all, m.Name)
		if (len(t.Machines) == 0 && t.Role == "") || slices.Contains(t.Machines, m.Name) || (t.Role != "" && m.Role == t.Role) {
			out = append(out, m.Name)
		}
	}
	for _, n := range t.Machines {
		if !slices.Contains(all, n) {
			return nil, fmt.Errorf("%w: --machine %q: cluster %q has %s", ErrNoTarget, n, st.Name, strings.Join(all, ", "))
		}
	}
	if len(out) == 0 {
		if t.Role != "" {
			return nil, fmt.Errorf("%w: --role %s: cluster %q has no %s (it has %s)", ErrNoTarget, t.Role, st.Name, t.Role, strings.Join(all, ", "))
		}
		return nil, fmt.Errorf("cluster %q has no machine", st.Name)
	}
	return out, nil
}

// imageLoadParallel is how many machines receive archives at once: each
// upload reads the file and crosses the host's link to the machines.
const imageLoadParallel = 2

// imageAgent is what loading images needs of a machine's agent.
type imageAgent interface {
	ImportImages(ctx context.Context, r io.Reader, size int64, pin bool) (*agent.ImportResult, error)
}

// imageArchive is a checked file: path as given, and its size.
type imageArchive struct {
	path string
	size int64
}

// LoadImages imports image archives (OCI or docker archives: tars, as
// `docker save` or `skopeo copy ... oci-archive:FILE:NAME` write them) into
// the targets' containerd (every machine's by default), where the kubelet sees them, so that pods
// run from them without a registry. pin exempts the images from the
// kubelet's image garbage collection. Every file is checked first (it
// exists, is readable and starts with a tar header): a bad one fails with
// ErrBadArchive, naming it, before anything is sent. Each file is then
// streamed from disk to each machine's agent (up to two machines at once),
// and progress gets a line per machine and file with the images it holds
// and the time taken. A machine that fails gets no further files; the
// others go on, and the error names every machine and file that failed.
func LoadImages(ctx context.Context, dataDir, name string, files []string, targets ImageTargets, pin bool, progress io.Writer) error {
	archives, err := checkImageArchives(files)
	if err != nil {
		return err
	}
	st, err := LoadState(dataDir, name)
	if err != nil {
		return err
	}
	machines, err := targets.Pick(st)
	if err != nil {
		return err
	}
	b, err := LoadBundle(dataDir, name)
	if err != nil {
		return err
	}
	l := &imageLoad{machines: machines, progress: progress, now: time.Now,
		connect: func(ctx context.Context, machine string) (imageAgent, error) {
			m, _ := st.Machine(machine)
			return AgentClient(ctx, st, m, b)
		}}
	return l.run(ctx, archives, pin)
}

// CheckImageArchives is LoadImages' check of its files, for callers that
// have more to do before loading (ErrBadArchive naming the first bad one);
// no file is no error here.
func CheckImageArchives(files []string) error {
	if len(files) == 0 {
		return nil
	}
	_, err := checkImageArchives(files)
	return err
}

// checkImageArchives checks every file before any is sent.
func checkImageArchives(files []string) ([]imageArchive, error) {
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no file given", ErrBadArchive)
	}
	var out []imageArchive
	for _, f := range files {
		size, err := checkImageArchive(f)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBadArchive, err)
		}
		out = append(out, imageArchive{path: f, size: size})
	}
	return out, nil
}

// checkImageArchive checks that file is a regular, readable file whose
// first 512-byte block is a tar header (its checksum right), and returns
// its size. ctr reads plain tars only: a compressed one is named as such.
func checkImageArchive(file string) (int64, error) {
	f, err := os.Open(file)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	if !fi.Mode().IsRegular() {
		return 0, fmt.Errorf("%s is not a file", file)
	}
	var block [512]byte
	n, err := io.ReadFull(f, block[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return 0, fmt.Errorf("%s: %w", file, err)
	}
	const want = "an OCI or docker image archive (a tar, e.g. from `docker save` or `skopeo copy ... oci-archive:FILE:NAME`)"
	switch {
	case bytes.HasPrefix(block[:n], []byte{0x1f, 0x8b}):
		return 0, fmt.Errorf("%s is gzip-compressed; give it uncompressed (gunzip it first): it must be %s", file, want)
	case bytes.HasPrefix(block[:n], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return 0, fmt.Errorf("%s is zstd-compressed; give it uncompressed (unzstd it first): it must be %s", file, want)
	case n < len(block) || !tarHeader(block):
		return 0, fmt.Errorf("%s is not a tar archive: it must be %s", file, want)
	}
	return fi.Size(), nil
}

// tarHeader says whether b is a tar header: its checksum field (octal)
// is the sum of its bytes with that field counted as spaces, unsigned or,
// as some old tars wrote it, signed.
func tarHeader(b [512]byte) bool {
	field := strings.TrimRight(strings.TrimLeft(string(b[148:156]), " \x00"), " \x00")
	want, err := strconv.ParseInt(field, 8, 64)
	if err != nil {
		return false
	}
	var unsigned, signed int64
	for i, c := range b {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	// An all-zero block (an empty archive's end) sums to 256 with the
	// spaces, and its empty field does not parse.
	return want == unsigned || want == signed
}

// imageLoad streams archives to machines' agents.
type imageLoad struct {
	machines []string
	// connect reaches a machine's agent; what it opens lives until ctx
	// ends (a cloud's tunnel).
	connect  func(ctx context.Context, machine string) (imageAgent, error)
	progress io.Writer
	now      func() time.Time
	mu       sync.Mutex // progress lines, from machines at once
}

func (l *imageLoad) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.progress, format, args...)
}

func (l *imageLoad) run(ctx context.Context, archives []imageArchive, pin bool) error {
	begin := l.now()
	errs := make([]error, len(l.machines))
	var g errgroup.Group
	g.SetLimit(imageLoadParallel)
	for i, m := range l.machines {
		g.Go(func() error {
			errs[i] = l.onMachine(ctx, m, archives, pin)
			return nil
		})
	}
	g.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("images load: %w", err)
	}
	l.printf("%d archives loaded on %d machines in %s\n", len(archives), len(l.machines), l.now().Sub(begin).Round(100*time.Millisecond))
	return nil
}

// onMachine sends every archive to one machine, in order, and stops at
// its first failure.
func (l *imageLoad) onMachine(ctx context.Context, machine string, archives []imageArchive, pin bool) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends what connect opened
	a, err := l.connect(ctx, machine)
	if err != nil {
		l.printf("  %s: FAILED: agent: %v\n", machine, err)
		return fmt.Errorf("%s: %w", machine, err)
	}
	for _, ar := range archives {
		start := l.now()
		res, err := l.send(ctx, a, ar, pin)
		took := l.now().Sub(start).Round(100 * time.Millisecond)
		if err != nil {
			l.printf("  %s: %s: FAILED after %s: %v\n", machine, ar.path, took, err)
			return fmt.Errorf("%s: %s: %w", machine, ar.path, err)
		}
		refs := make([]string, len(res.Images))
		for i, img := range res.Images {
			refs[i] = img.Ref
		}
		what := strings.Join(refs, ", ")
		if what == "" {
			what = "no image reported"
		}
		if res.Pinned {
			what += " (pinned)"
		}
		l.printf("  %s: %s: %s (%.1f MB in %s)\n", machine, ar.path, what, float64(ar.size)/1e6, took)
	}
	return nil
}

// send streams one archive from disk to one agent.
func (l *imageLoad) send(ctx context.Context, a imageAgent, ar imageArchive, pin bool) (*agent.ImportResult, error) {
	f, err := os.Open(ar.path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return a.ImportImages(ctx, f, ar.size, pin)
}
