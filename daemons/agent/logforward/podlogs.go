package logforward

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Pod log defaults: the kubelet's log directory, the poll interval, the
// longest joined message (longer partial sequences are sent in pieces of
// this size rather than held in memory), and the offsets file.
const (
	DefaultPodLogDir = "/var/log/pods"
	podPollInterval  = time.Second
	maxPodMessage    = 1 << 20
	podStateFile     = "pod-logs.json"
)

// PodLogsConfig configures the pod log source.
type PodLogsConfig struct {
	// Dir is the kubelet's pod log directory; default DefaultPodLogDir.
	Dir string
	// StateDir holds the offsets file.
	StateDir string
	Origin   Origin
	Submit   func(context.Context, []Record) error
	Metrics  *Metrics
	Log      *slog.Logger
	// Interval between polls; default 1 s.
	Interval time.Duration
}

// PodLogs is the task that forwards container logs the kubelet keeps as
// <Dir>/<namespace>_<pod>_<uid>/<container>/<restart>.log, in the CRI log
// format, as records tagged PodTag.
//
// It is a poller rather than github.com/nxadm/tail (already in the module
// graph): tail -F semantics re-open a file by name when it is renamed, and
// whatever the runtime wrote into the renamed file between the last read
// and the re-open is lost; its offsets (Tell) are documented as
// approximate, and it runs a goroutine and an inotify watch per file.
// Here files are followed by inode, through an open descriptor, which is
// what the kubelet's rotation needs:
//
//   - rotation renames N.log to N.log.<YYYYMMDD-hhmmss> (same inode) and
//     asks containerd to reopen N.log (a new inode). The renamed file is
//     read to its end once the new N.log exists (containerd writes only to
//     the new one from then on), then the new one from offset 0. The
//     kubelet gzips a rotated file only at the next rotation, so a running
//     agent reads it first; .gz files are never read.
//   - a container restart starts (N+1).log; files of one container are read
//     in order: lower N first, rotated before live.
//   - a removed pod's files are read to the end through the open
//     descriptor, then forgotten.
//
// Offsets are kept per file (directory and inode), in StateDir as JSON,
// written after every batch Submit accepted: a restart resumes each file,
// renamed or not, where delivery stopped. A file that appears with no
// saved offset (a new pod, a new restart, the agent's first start) is read
// from its start. A partial line (P) is joined with the following lines of
// its stream up to the full one (F); the saved offset stays before the
// first piece until the line is complete. Two cases still repeat or lose
// lines, both rare: stdout and stderr partials interleaved when the agent
// crashes mid-line (the other stream's lines after the first piece are
// re-read), and a file rotated twice and gzipped while the agent was down
// (the rest of it is not read).
type PodLogs struct {
	cfg    PodLogsConfig
	files  map[fileKey]*podFile
	saved  map[fileKey]savedPodFile
	loaded bool
	br     *bufio.Reader
}

type fileKey struct {
	Dir string // <namespace>_<pod>_<uid>/<container>
	Ino uint64
}

type podFile struct {
	key       fileKey
	meta      podMeta
	name      string // current base name
	restart   int    // N of N.log
	rotated   string // timestamp suffix of a rotated file, "" when live
	size      int64
	seen      bool // found by the last scan
	f         *os.File
	off       int64 // end of the last line read
	committed int64 // delivered up to here
	partial   map[string]*partialLine
	done      bool // rotated, superseded and delivered to the end
}

type partialLine struct {
	start int64
	time  time.Time
	msg   []byte
}

type podMeta struct {
	Namespace, Pod, UID, Container string
}

type savedPodFile struct {
	Dir    string `json:"dir"`
	Name   string `json:"name"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
	Done   bool   `json:"done,omitempty"`
}

type podState struct {
	Files []savedPodFile `json:"files"`
}

// NewPodLogs returns the pod log source.
func NewPodLogs(cfg PodLogsConfig) *PodLogs {
	if cfg.Dir == "" {
		cfg.Dir = DefaultPodLogDir
	}
	if cfg.Interval == 0 {
		cfg.Interval = podPollInterval
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &PodLogs{cfg: cfg, files: map[fileKey]*podFile{}, br: bufio.NewReaderSize(nil, 64<<10)}
}

func (p *PodLogs) Name() string { return "pod-log-forward" }

// Run polls until ctx ends.
func (p *PodLogs) Run(ctx context.Context) error {
	p.load()
	// After a failed run, resume from what was delivered.
	for _, pf := range p.files {
		pf.off, pf.partial = pf.committed, nil
	}
	defer func() {
		for _, pf := range p.files {
			if pf.f != nil {
				pf.f.Close()
				pf.f = nil
			}
		}
	}()
	return pollEvery(ctx, p.cfg.Interval, p.Poll)
}

type foundFile struct {
	key     fileKey
	meta    podMeta
	name    string
	restart int
	rotated string
	size    int64
}

var (
	liveLogName    = regexp.MustCompile(`^(\d+)\.log$`)
	rotatedLogName = regexp.MustCompile(`^(\d+)\.log\.(\d{8}-\d{6})$`)
)

// scan lists the log files under Dir: live N.log and uncompressed rotated
// N.log.<timestamp>; the kubelet's .gz and .tmp files are skipped.
func (p *PodLogs) scan() ([]foundFile, error) {
	pods, err := os.ReadDir(p.cfg.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pod logs: %w", err)
	}
	var out []foundFile
	for _, pd := range pods {
		meta, ok := parsePodDir(pd.Name())
		if !ok || !pd.IsDir() {
			continue
		}
		containers, err := os.ReadDir(filepath.Join(p.cfg.Dir, pd.Name()))
		if err != nil {
			continue // removed meanwhile
		}
		for _, c := range containers {
			if !c.IsDir() {
				continue
			}
			dir := pd.Name() + "/" + c.Name()
			files, err := os.ReadDir(filepath.Join(p.cfg.Dir, dir))
			if err != nil {
				continue
			}
			for _, f := range files {
				ff := foundFile{name: f.Name(), meta: meta}
				ff.meta.Container = c.Name()
				if m := liveLogName.FindStringSubmatch(f.Name()); m != nil {
					ff.restart, _ = strconv.Atoi(m[1])
				} else if m := rotatedLogName.FindStringSubmatch(f.Name()); m != nil {
					ff.restart, _ = strconv.Atoi(m[1])
					ff.rotated = m[2]
				} else {
					continue
				}
				info, err := f.Info()
				if err != nil || !info.Mode().IsRegular() {
					continue
				}
				st, ok := info.Sys().(*syscall.Stat_t)
				if !ok {
					continue
				}
				ff.key = fileKey{Dir: dir, Ino: st.Ino}
				ff.size = info.Size()
				out = append(out, ff)
			}
		}
	}
	return out, nil
}

// parsePodDir splits <namespace>_<pod>_<uid>; names and namespaces are DNS
// labels or subdomains, which have no '_'.
func parsePodDir(name string) (podMeta, bool) {
	parts := strings.Split(name, "_")
	if len(parts) != 3 || parts[0] == "" || parts[1] == "" {
		return podMeta{}, false
	}
	return podMeta{Namespace: parts[0], Pod: parts[1], UID: parts[2]}, true
}

func (p *PodLogs) load() {
	if p.loaded {
		return
	}
	if err := p.loadState(); err != nil {
		p.cfg.Log.Warn("cannot read pod log offsets; reading every file from its start", "err", err)
	}
	p.loaded = true
}

// Poll scans once and forwards what was written since the last poll.
func (p *PodLogs) Poll(ctx context.Context) error {
	p.load()
	found, err := p.scan()
	if err != nil {
		return err
	}
	for _, pf := range p.files {
		pf.seen = false
	}
	live := map[string]uint64{} // dir/N.log -> inode
	changed := false            // the set of files, for the state file
	for _, ff := range found {
		pf := p.files[ff.key]
		if pf == nil {
			changed = true
			pf = &podFile{key: ff.key, meta: ff.meta}
			if s, ok := p.saved[ff.key]; ok && s.Offset <= ff.size {
				pf.off, pf.committed, pf.done = s.Offset, s.Offset, s.Done
			}
			p.files[ff.key] = pf
		}
		pf.seen, pf.name, pf.restart, pf.rotated, pf.size = true, ff.name, ff.restart, ff.rotated, ff.size
		if ff.rotated == "" {
			live[ff.key.Dir+"/"+ff.name] = ff.key.Ino
		}
	}
	if p.saved != nil {
		for k, s := range p.saved {
			if _, ok := p.files[k]; !ok && !s.Done {
				p.cfg.Log.Warn("pod log file gone before it was read to the end (rotated away while the agent was down)",
					"file", s.Dir+"/"+s.Name, "offset", s.Offset)
			}
		}
		p.saved = nil
	}

	order := make([]*podFile, 0, len(p.files))
	for _, pf := range p.files {
		order = append(order, pf)
	}
	// Per container: older restarts first; rotated (oldest first) before live.
	slices.SortFunc(order, func(a, b *podFile) int {
		return cmp.Or(strings.Compare(a.key.Dir, b.key.Dir), cmp.Compare(a.restart, b.restart),
			cmp.Compare(b2i(a.rotated == ""), b2i(b.rotated == "")), strings.Compare(a.rotated, b.rotated))
	})

	batch := &podBatch{commits: map[*podFile]int64{}}
	var finished []*podFile
	for _, pf := range order {
		if pf.done {
			continue
		}
		if pf.seen && pf.size < pf.off {
			// Truncated in place (not the kubelet's way, but copytruncate
			// rotation does it): start over.
			p.cfg.Log.Warn("pod log file shrank; reading it from the start", "file", pf.key.Dir+"/"+pf.name)
			pf.off, pf.committed, pf.partial = 0, 0, nil
		}
		// A file is final when nothing more will be written to it: gone
		// from disk, or rotated with its successor in place.
		ino, hasSuccessor := live[pf.key.Dir+"/"+strconv.Itoa(pf.restart)+".log"]
		final := !pf.seen || pf.rotated != "" && hasSuccessor && ino != pf.key.Ino
		if err := p.read(ctx, pf, final, batch); err != nil {
			return err
		}
		if final {
			finished = append(finished, pf)
		}
	}
	if err := p.flush(ctx, batch); err != nil {
		return err
	}
	for _, pf := range finished {
		pf.done, changed = true, true
	}
	for k, pf := range p.files {
		if pf.done && pf.f != nil {
			pf.f.Close()
			pf.f = nil
		}
		if !pf.seen {
			delete(p.files, k)
			changed = true
		}
	}
	if !changed {
		return nil // offsets were saved with each delivered batch
	}
	return p.saveState()
}

type podBatch struct {
	recs    []Record
	size    int
	commits map[*podFile]int64
}

// read forwards the complete lines of pf from its offset. A final file's
// unterminated last line and pending partial lines are forwarded too.
func (p *PodLogs) read(ctx context.Context, pf *podFile, final bool, batch *podBatch) error {
	if pf.f == nil {
		if !pf.seen {
			return nil // gone before it was ever opened
		}
		f, err := os.Open(filepath.Join(p.cfg.Dir, pf.key.Dir, pf.name))
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return fmt.Errorf("pod logs: %w", err)
		}
		if st, err := f.Stat(); err != nil || st.Sys().(*syscall.Stat_t).Ino != pf.key.Ino {
			f.Close() // replaced since the scan; the next poll sees the new one
			return nil
		}
		pf.f = f
	}
	if _, err := pf.f.Seek(pf.off, io.SeekStart); err != nil {
		return fmt.Errorf("pod logs: %s: %w", pf.name, err)
	}
	p.br.Reset(pf.f)
	defer p.br.Reset(nil)
	for {
		line, err := p.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			// A line longer than the reader's buffer: the runtime splits
			// lines at 16 KiB, so this is not CRI; take it in pieces.
			err = nil
		} else if err != nil && (!final || len(line) == 0) {
			break // EOF: an unterminated line waits for its end
		}
		start := pf.off
		pf.off += int64(len(line))
		p.handleLine(pf, start, bytes.TrimSuffix(line, []byte("\n")), batch)
		batch.commits[pf] = pf.commitPoint()
		if len(batch.recs) >= maxBatch || batch.size >= maxBatchBytes {
			if err := p.flush(ctx, batch); err != nil {
				return err
			}
		}
		if err != nil {
			break
		}
	}
	if final {
		for _, stream := range slices.Sorted(maps.Keys(pf.partial)) {
			pl := pf.partial[stream]
			p.emit(pf, pl.time, stream, pl.msg, batch)
		}
		pf.partial = nil
		batch.commits[pf] = pf.commitPoint()
	}
	return nil
}

func (p *PodLogs) handleLine(pf *podFile, start int64, line []byte, batch *podBatch) {
	c, err := ParseCRILine(line)
	if err != nil {
		// Not CRI: forward the line as it is rather than lose it.
		p.emit(pf, time.Now(), "", line, batch)
		return
	}
	pl := pf.partial[c.Stream]
	if c.Partial {
		if pl == nil {
			if pf.partial == nil {
				pf.partial = map[string]*partialLine{}
			}
			pl = &partialLine{start: start, time: c.Time}
			pf.partial[c.Stream] = pl
		}
		pl.msg = append(pl.msg, c.Text...)
		if len(pl.msg) >= maxPodMessage {
			delete(pf.partial, c.Stream)
			p.emit(pf, pl.time, c.Stream, pl.msg, batch)
		}
		return
	}
	if pl != nil {
		delete(pf.partial, c.Stream)
		p.emit(pf, pl.time, c.Stream, append(pl.msg, c.Text...), batch)
		return
	}
	p.emit(pf, c.Time, c.Stream, c.Text, batch)
}

func (p *PodLogs) emit(pf *podFile, t time.Time, stream string, msg []byte, batch *podBatch) {
	p.cfg.Metrics.Read.WithLabelValues(SourcePod).Inc()
	body := EncodePod(nil, p.cfg.Origin, PodFields{
		Message: string(msg), Namespace: pf.meta.Namespace, Pod: pf.meta.Pod, Container: pf.meta.Container, Stream: stream,
	})
	batch.recs = append(batch.recs, Record{Tag: PodTag, Time: t, Body: body})
	batch.size += len(body)
}

// commitPoint is the offset up to which everything is in records: the
// start of the oldest unfinished partial line, else the read offset.
func (pf *podFile) commitPoint() int64 {
	c := pf.off
	for _, pl := range pf.partial {
		c = min(c, pl.start)
	}
	return c
}

// flush submits the batch, then moves the files' committed offsets and
// saves them.
func (p *PodLogs) flush(ctx context.Context, batch *podBatch) error {
	if len(batch.recs) > 0 {
		if err := p.cfg.Submit(ctx, batch.recs); err != nil {
			return fmt.Errorf("forward pod logs: %w", err)
		}
	}
	changed := false
	for pf, c := range batch.commits {
		if pf.committed != c {
			pf.committed, changed = c, true
		}
	}
	batch.recs, batch.size = batch.recs[:0], 0
	clear(batch.commits)
	if changed {
		return p.saveState()
	}
	return nil
}

func (p *PodLogs) loadState() error {
	data, err := os.ReadFile(filepath.Join(p.cfg.StateDir, podStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st podState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s: %w", podStateFile, err)
	}
	p.saved = map[fileKey]savedPodFile{}
	for _, f := range st.Files {
		p.saved[fileKey{Dir: f.Dir, Ino: f.Ino}] = f
	}
	return nil
}

func (p *PodLogs) saveState() error {
	st := podState{Files: []savedPodFile{}}
	for _, pf := range p.files {
		st.Files = append(st.Files, savedPodFile{Dir: pf.key.Dir, Name: pf.name, Ino: pf.key.Ino, Offset: pf.committed, Done: pf.done})
	}
	slices.SortFunc(st.Files, func(a, b savedPodFile) int {
		return cmp.Or(strings.Compare(a.Dir, b.Dir), strings.Compare(a.Name, b.Name))
	})
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(p.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("pod log offsets: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(p.cfg.StateDir, podStateFile), data, false); err != nil {
		return fmt.Errorf("pod log offsets: %w", err)
	}
	return nil
}

// CRILine is one line of a CRI container log file:
//
//	<RFC 3339 time> <stdout|stderr> <tags> <text>
//
// where tags is P (partial: the line continues in the next P or F line of
// the same stream) or F (full), possibly followed by ':'-separated tags.
type CRILine struct {
	Time    time.Time
	Stream  string
	Partial bool
	Text    []byte
}

// ParseCRILine parses a line without its newline.
func ParseCRILine(line []byte) (CRILine, error) {
	ts, rest, ok := bytes.Cut(line, []byte{' '})
	if !ok {
		return CRILine{}, errors.New("CRI log line: no stream")
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil {
		return CRILine{}, fmt.Errorf("CRI log line: %w", err)
	}
	stream, rest, ok := bytes.Cut(rest, []byte{' '})
	if !ok || (string(stream) != "stdout" && string(stream) != "stderr") {
		return CRILine{}, errors.New("CRI log line: no stream")
	}
	tags, text, _ := bytes.Cut(rest, []byte{' '})
	first, _, _ := bytes.Cut(tags, []byte{':'})
	switch string(first) {
	case "P", "F":
	default:
		return CRILine{}, fmt.Errorf("CRI log line: tag %q", tags)
	}
	return CRILine{Time: t, Stream: string(stream), Partial: string(first) == "P", Text: text}, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// pollEvery calls poll, then every interval, until ctx ends (nil) or poll
// fails while ctx is live (its error): the file followers' loop.
func pollEvery(ctx context.Context, interval time.Duration, poll func(context.Context) error) error {
	for {
		if err := poll(ctx); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(interval):
		}
	}
}
