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
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Audit log defaults: the poll interval, the longest event taken (the API
// server refuses request bodies over 3 MiB, so a Request-level event is
// smaller; a longer line is dropped and counted as too_large), and the
// offsets file.
const (
	auditPollInterval = time.Second
	maxAuditEvent     = 4 << 20
	auditStateFile    = "audit-log.json"
)

// AuditLogConfig configures the audit log source.
type AuditLogConfig struct {
	// Path is the API server's --audit-log-path. It rotates the file
	// itself (lumberjack): the full file is renamed to
	// <name>-<UTC time><ext> beside it and a new one is started.
	Path     string
	StateDir string
	Origin   Origin
	Submit   func(context.Context, []Record) error
	Metrics  *Metrics
	Log      *slog.Logger
	// Interval between polls; default 1 s.
	Interval time.Duration
}

// AuditLog is the task that forwards the API server's audit log (one JSON
// event per line) as records tagged AuditTag: the whole event is the
// message, and its who, what and outcome are fields (EncodeAudit).
//
// It follows files by inode, as PodLogs does, but the audit log is simpler
// than a container's: one writer, whole lines, one file at a time, and a
// rotation that renames the full file and starts a new one. A renamed
// (rotated) file is never written again, so it is read to its end and
// then only remembered until the API server deletes it (--audit-log-maxbackup,
// --audit-log-maxage); rotated files are read oldest first, the live one
// last. Offsets are kept per inode in StateDir, written after every batch
// Submit accepted, so a restarted agent resumes each file where delivery
// stopped, renamed or not; a file with no saved offset is read from its
// start.
type AuditLog struct {
	cfg    AuditLogConfig
	files  map[uint64]*auditFile
	saved  map[uint64]savedAuditFile
	loaded bool
	br     *bufio.Reader
	line   []byte
}

type auditFile struct {
	ino     uint64
	name    string
	rotated bool
	size    int64
	seen    bool
	f       *os.File
	off     int64 // delivered up to here
	done    bool  // rotated and delivered to its end
}

type savedAuditFile struct {
	Name   string `json:"name"`
	Ino    uint64 `json:"ino"`
	Offset int64  `json:"offset"`
	Done   bool   `json:"done,omitempty"`
}

type auditState struct {
	Files []savedAuditFile `json:"files"`
}

// NewAuditLog returns the audit log source.
func NewAuditLog(cfg AuditLogConfig) *AuditLog {
	if cfg.Interval == 0 {
		cfg.Interval = auditPollInterval
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	return &AuditLog{cfg: cfg, files: map[uint64]*auditFile{}, br: bufio.NewReaderSize(nil, 64<<10)}
}

func (a *AuditLog) Name() string { return "audit-log-forward" }

// Run polls until ctx ends.
func (a *AuditLog) Run(ctx context.Context) error {
	defer func() {
		for _, af := range a.files {
			if af.f != nil {
				af.f.Close()
				af.f = nil
			}
		}
	}()
	return pollEvery(ctx, a.cfg.Interval, a.Poll)
}

// rotatedName matches lumberjack's backup names for the live file's name:
// audit.log is rotated to audit-2006-01-02T15-04-05.000.log.
func (a *AuditLog) rotatedName() *regexp.Regexp {
	base := filepath.Base(a.cfg.Path)
	ext := filepath.Ext(base)
	prefix := strings.TrimSuffix(base, ext)
	return regexp.MustCompile(`^` + regexp.QuoteMeta(prefix) + `-\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{3}` + regexp.QuoteMeta(ext) + `$`)
}

// scan lists the live file and the uncompressed rotated ones.
func (a *AuditLog) scan() ([]auditFile, error) {
	dir, live := filepath.Dir(a.cfg.Path), filepath.Base(a.cfg.Path)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil // no API server here yet
	}
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	rotated := a.rotatedName()
	var out []auditFile
	for _, e := range entries {
		isRotated := rotated.MatchString(e.Name())
		if e.Name() != live && !isRotated {
			continue
		}
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			continue
		}
		out = append(out, auditFile{ino: st.Ino, name: e.Name(), rotated: isRotated, size: info.Size()})
	}
	return out, nil
}

// Poll scans once and forwards every complete event written since the
// last poll.
func (a *AuditLog) Poll(ctx context.Context) error {
	if !a.loaded {
		if err := a.loadState(); err != nil {
			a.cfg.Log.Warn("cannot read audit log offsets; reading every file from its start", "err", err)
		}
		a.loaded = true
	}
	found, err := a.scan()
	if err != nil {
		return err
	}
	for _, af := range a.files {
		af.seen = false
	}
	changed := false
	for _, ff := range found {
		af := a.files[ff.ino]
		if af == nil {
			changed = true
			af = &auditFile{ino: ff.ino}
			if s, ok := a.saved[ff.ino]; ok && s.Offset <= ff.size {
				af.off, af.done = s.Offset, s.Done
			}
			a.files[ff.ino] = af
		}
		af.seen, af.name, af.rotated, af.size = true, ff.name, ff.rotated, ff.size
	}
	for ino, s := range a.saved {
		if _, ok := a.files[ino]; !ok && !s.Done {
			a.cfg.Log.Warn("audit log file gone before it was read to the end (deleted while the agent was down)", "file", s.Name, "offset", s.Offset)
		}
	}
	a.saved = nil

	order := make([]*auditFile, 0, len(a.files))
	for _, af := range a.files {
		order = append(order, af)
	}
	// Rotated files (oldest first: their names are their times), then the
	// live one; a file gone from disk is read to its end first.
	slices.SortFunc(order, func(x, y *auditFile) int {
		return cmp.Or(cmp.Compare(b2i(x.seen && !x.rotated), b2i(y.seen && !y.rotated)), strings.Compare(x.name, y.name))
	})
	for _, af := range order {
		if af.done {
			continue
		}
		if af.seen && af.size < af.off {
			a.cfg.Log.Warn("audit log file shrank; reading it from the start", "file", af.name)
			af.off = 0
		}
		final := !af.seen || af.rotated
		if err := a.read(ctx, af, final); err != nil {
			return err
		}
		if final {
			af.done, changed = true, true
		}
	}
	for ino, af := range a.files {
		if af.done && af.f != nil {
			af.f.Close()
			af.f = nil
		}
		if !af.seen {
			delete(a.files, ino)
			changed = true
		}
	}
	if !changed {
		return nil // offsets were saved with each delivered batch
	}
	return a.saveState()
}

// read forwards af's complete lines from its offset, in batches; a final
// file's unterminated last line too.
func (a *AuditLog) read(ctx context.Context, af *auditFile, final bool) error {
	if af.f == nil {
		if !af.seen {
			return nil
		}
		f, err := os.Open(filepath.Join(filepath.Dir(a.cfg.Path), af.name))
		if errors.Is(err, fs.ErrNotExist) {
			return nil // rotated away since the scan: the next poll finds it
		}
		if err != nil {
			return fmt.Errorf("audit log: %w", err)
		}
		if st, err := f.Stat(); err != nil || st.Sys().(*syscall.Stat_t).Ino != af.ino {
			f.Close()
			return nil
		}
		af.f = f
	}
	if _, err := af.f.Seek(af.off, io.SeekStart); err != nil {
		return fmt.Errorf("audit log: %s: %w", af.name, err)
	}
	a.br.Reset(af.f)
	defer a.br.Reset(nil)
	var recs []Record
	size := 0
	off := af.off
	flush := func() error {
		if len(recs) > 0 {
			if err := a.cfg.Submit(ctx, recs); err != nil {
				return fmt.Errorf("forward audit log: %w", err)
			}
			recs, size = recs[:0], 0
		}
		if off == af.off {
			return nil
		}
		af.off = off // only now: what was read is delivered (or buffered)
		return a.saveState()
	}
	for {
		line, n, complete, err := a.readLine()
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("audit log: %s: %w", af.name, err)
		}
		if n == 0 || !complete && !final {
			break // nothing more, or a line still being written
		}
		off += n
		switch {
		case line == nil:
			a.cfg.Metrics.Dropped.WithLabelValues(DropTooLarge).Inc()
			a.cfg.Log.Warn("audit event longer than the limit dropped", "file", af.name, "bytes", n, "limit", maxAuditEvent)
		case len(bytes.TrimSpace(line)) > 0:
			r := a.record(line)
			recs = append(recs, r)
			size += len(r.Body)
		}
		if len(recs) >= maxBatch || size >= maxBatchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// readLine reads one line without its newline: n is the bytes it took in
// the file, complete whether it ended in a newline. A line longer than
// maxAuditEvent is consumed whole and returned as nil.
func (a *AuditLog) readLine() (line []byte, n int64, complete bool, err error) {
	a.line = a.line[:0]
	tooLong := false
	for {
		chunk, err := a.br.ReadSlice('\n')
		n += int64(len(chunk))
		if !tooLong {
			if len(a.line)+len(chunk) > maxAuditEvent+1 {
				tooLong, a.line = true, a.line[:0]
			} else {
				a.line = append(a.line, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			if tooLong {
				return nil, n, false, err
			}
			return a.line, n, false, err
		}
		if tooLong {
			return nil, n, true, nil
		}
		return bytes.TrimSuffix(a.line, []byte("\n")), n, true, nil
	}
}

// auditEvent is what EncodeAudit takes out of an audit.k8s.io/v1 Event.
type auditEvent struct {
	Verb string `json:"verb"`
	User struct {
		Username string `json:"username"`
	} `json:"user"`
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Subresource string `json:"subresource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	StageTimestamp time.Time `json:"stageTimestamp"`
}

// record makes one line a record; a line that is not an event is still
// forwarded, as its message alone, rather than lost.
func (a *AuditLog) record(line []byte) Record {
	a.cfg.Metrics.Read.WithLabelValues(SourceAudit).Inc()
	f := AuditFields{Message: string(line)}
	t := time.Now()
	var e auditEvent
	if err := json.Unmarshal(line, &e); err == nil {
		f.User, f.Verb = e.User.Username, e.Verb
		if r := e.ObjectRef; r != nil {
			f.Resource, f.Namespace, f.Name = r.Resource, r.Namespace, r.Name
			if r.Subresource != "" {
				f.Resource += "/" + r.Subresource
			}
		}
		if e.ResponseStatus != nil {
			f.Code = e.ResponseStatus.Code
		}
		if !e.StageTimestamp.IsZero() {
			t = e.StageTimestamp
		}
	}
	return Record{Tag: AuditTag, Time: t, Body: EncodeAudit(nil, a.cfg.Origin, f)}
}

func (a *AuditLog) loadState() error {
	data, err := os.ReadFile(filepath.Join(a.cfg.StateDir, auditStateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var st auditState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s: %w", auditStateFile, err)
	}
	a.saved = map[uint64]savedAuditFile{}
	for _, f := range st.Files {
		a.saved[f.Ino] = f
	}
	return nil
}

func (a *AuditLog) saveState() error {
	st := auditState{Files: []savedAuditFile{}}
	for _, af := range a.files {
		st.Files = append(st.Files, savedAuditFile{Name: af.name, Ino: af.ino, Offset: af.off, Done: af.done})
	}
	slices.SortFunc(st.Files, func(x, y savedAuditFile) int { return strings.Compare(x.Name, y.Name) })
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(a.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("audit log offsets: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(a.cfg.StateDir, auditStateFile), data, false); err != nil {
		return fmt.Errorf("audit log offsets: %w", err)
	}
	return nil
}
