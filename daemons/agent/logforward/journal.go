package logforward

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// JournalRunner runs journalctl with args, writing its standard output to
// w, until it exits or ctx ends (the agent's exec; tests fake it).
type JournalRunner func(ctx context.Context, args []string, w io.Writer) error

// Journal read limits: records per Submit, and the longest JSON line taken
// whole (journald's own line limit is 48 KiB; a native entry can be far
// larger, and the agent runs under MemoryMax=128M).
const (
	maxBatch       = 512
	maxBatchBytes  = 1 << 20
	maxJournalLine = 4 << 20
	cursorFile     = "journal.cursor"
)

// JournalConfig configures the journal source.
type JournalConfig struct {
	Units       []string
	Identifiers []string
	Origin      Origin
	// StateDir holds the cursor file.
	StateDir string
	Run      JournalRunner
	Submit   func(context.Context, []Record) error
	Metrics  *Metrics
	Log      *slog.Logger
}

// Journal is the task that follows the journal of the machine's units and
// of SYSLOG_IDENTIFIERs (systemd-cat -t kubeup) with
// `journalctl --follow --output=json` and submits each entry as a record
// tagged JournalTag. The agent is built without cgo, so it cannot link
// libsystemd's sd-journal; journalctl is sd-journal's own client.
//
// Position: the cursor of the last entry Submit accepted is kept in memory
// and written to StateDir/journal.cursor after every accepted batch;
// journalctl restarts (the task failing, the agent restarting) resume
// --after-cursor. Without a cursor the task starts at the beginning of the
// current boot (--boot): every line of the units since boot reaches the
// aggregator, and a machine whose state was wiped does not resend earlier
// boots. A crash between a batch's delivery and the cursor write (the
// write is a rename, microseconds) repeats that batch.
type Journal struct {
	cfg    JournalConfig
	cursor string
	loaded bool
	units  map[string]bool
	idents map[string]bool
}

// NewJournal returns the journal source.
func NewJournal(cfg JournalConfig) *Journal {
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics()
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	j := &Journal{cfg: cfg, units: map[string]bool{}, idents: map[string]bool{}}
	for _, u := range cfg.Units {
		j.units[u] = true
	}
	for _, i := range cfg.Identifiers {
		j.idents[i] = true
	}
	return j
}

func (j *Journal) Name() string { return "journal-forward" }

// Cursor is the position of the last entry delivered.
func (j *Journal) Cursor() string { return j.cursor }

// journalFields are the fields journalctl prints (besides __CURSOR,
// __REALTIME_TIMESTAMP, __MONOTONIC_TIMESTAMP and _BOOT_ID, which it always
// prints): less JSON to parse per entry.
var journalFields = []string{
	"MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "_COMM", "_PID", "_SYSTEMD_UNIT",
	"UNIT", "OBJECT_SYSTEMD_UNIT", "COREDUMP_UNIT",
}

// coredumpMessageID is systemd-coredump's MESSAGE_ID.
const coredumpMessageID = "fc2e22bc6ee647b6b90729ab34a250b1"

// JournalFollowArgs are journalctl's arguments: follow from after cursor
// (or from the start of the current boot when it is empty), JSON output,
// and the matches.
//
// The matches are spelled out instead of using -u: journalctl ANDs the -u
// group with any field match given besides it (`-u kubelet.service
// SYSLOG_IDENTIFIER=kubeup` shows nothing, and a "+" cannot join them),
// while alternatives within field matches work: the same field given
// twice is OR, and "+" ORs groups. The groups are those -u expands to
// (systemd's add_matches_for_unit): the unit's own messages, systemd's
// messages about it, messages about it from other root daemons and its
// coredumps; then one group per identifier.
func JournalFollowArgs(units, identifiers []string, cursor string) []string {
	args := []string{"--follow", "--output=json", "--all", "--no-tail", "--no-pager", "--quiet",
		"--output-fields=" + strings.Join(journalFields, ",")}
	if cursor != "" {
		args = append(args, "--after-cursor="+cursor)
	} else {
		args = append(args, "--boot")
	}
	var groups [][]string
	if len(units) > 0 {
		var own, pid1, object, core []string
		for _, u := range units {
			own = append(own, "_SYSTEMD_UNIT="+u)
			pid1 = append(pid1, "UNIT="+u)
			object = append(object, "OBJECT_SYSTEMD_UNIT="+u)
			core = append(core, "COREDUMP_UNIT="+u)
		}
		groups = append(groups,
			own,
			append([]string{"_PID=1"}, pid1...),
			append([]string{"_UID=0"}, object...),
			append([]string{"MESSAGE_ID=" + coredumpMessageID, "_UID=0"}, core...),
		)
	}
	if len(identifiers) > 0 {
		var ids []string
		for _, i := range identifiers {
			ids = append(ids, "SYSLOG_IDENTIFIER="+i)
		}
		groups = append(groups, ids)
	}
	for i, g := range groups {
		if i > 0 {
			args = append(args, "+")
		}
		args = append(args, g...)
	}
	return args
}

// JournalEntry is what the forwarder takes from one journal entry.
type JournalEntry struct {
	Cursor     string
	Time       time.Time
	Message    string
	Priority   int
	Identifier string
	PID        int
	SystemUnit string // _SYSTEMD_UNIT
	AboutUnit  string // UNIT, OBJECT_SYSTEMD_UNIT or COREDUMP_UNIT
}

type rawJournalEntry struct {
	Cursor     string          `json:"__CURSOR"`
	Realtime   json.RawMessage `json:"__REALTIME_TIMESTAMP"`
	Message    json.RawMessage `json:"MESSAGE"`
	Priority   json.RawMessage `json:"PRIORITY"`
	Identifier json.RawMessage `json:"SYSLOG_IDENTIFIER"`
	Comm       json.RawMessage `json:"_COMM"`
	PID        json.RawMessage `json:"_PID"`
	SystemUnit json.RawMessage `json:"_SYSTEMD_UNIT"`
	Unit       json.RawMessage `json:"UNIT"`
	ObjectUnit json.RawMessage `json:"OBJECT_SYSTEMD_UNIT"`
	CoreUnit   json.RawMessage `json:"COREDUMP_UNIT"`
}

// ParseJournalEntry parses one line of `journalctl --output=json`. A field
// is a string, an array of byte values (when it is not valid UTF-8 or
// holds control characters), null (too large, without --all) or, when the
// entry has the field more than once, an array of those; MESSAGE's values
// are then joined by newlines, other fields take the first. PRIORITY
// defaults to 6 (info), journald's default for stdout.
func ParseJournalEntry(line []byte) (JournalEntry, error) {
	var raw rawJournalEntry
	if err := json.Unmarshal(line, &raw); err != nil {
		return JournalEntry{}, fmt.Errorf("journal entry: %w", err)
	}
	if raw.Cursor == "" {
		return JournalEntry{}, errors.New("journal entry: no __CURSOR")
	}
	e := JournalEntry{Cursor: raw.Cursor, Priority: 6}
	us, err := strconv.ParseInt(firstValue(raw.Realtime), 10, 64)
	if err != nil {
		return JournalEntry{}, fmt.Errorf("journal entry: __REALTIME_TIMESTAMP: %w", err)
	}
	e.Time = time.UnixMicro(us)
	e.Message = strings.Join(fieldValues(raw.Message), "\n")
	if p, err := strconv.Atoi(firstValue(raw.Priority)); err == nil && p >= 0 && p <= 7 {
		e.Priority = p
	}
	e.Identifier = firstValue(raw.Identifier)
	if e.Identifier == "" {
		e.Identifier = firstValue(raw.Comm)
	}
	e.PID, _ = strconv.Atoi(firstValue(raw.PID))
	e.SystemUnit = firstValue(raw.SystemUnit)
	for _, f := range []json.RawMessage{raw.Unit, raw.ObjectUnit, raw.CoreUnit} {
		if v := firstValue(f); v != "" {
			e.AboutUnit = v
			break
		}
	}
	return e, nil
}

// fieldValues decodes a journal JSON field into its values.
func fieldValues(raw json.RawMessage) []string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] == 'n' { // absent or null
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		return []string{s}
	}
	var arr []json.RawMessage
	if json.Unmarshal(raw, &arr) != nil || len(arr) == 0 {
		return nil
	}
	if c := bytes.TrimSpace(arr[0]); len(c) > 0 && (c[0] >= '0' && c[0] <= '9') {
		// One value as bytes.
		var bs []int
		if json.Unmarshal(raw, &bs) != nil {
			return nil
		}
		b := make([]byte, len(bs))
		for i, v := range bs {
			b[i] = byte(v)
		}
		return []string{string(b)}
	}
	var out []string
	for _, v := range arr {
		out = append(out, fieldValues(v)...)
	}
	return out
}

func firstValue(raw json.RawMessage) string {
	if v := fieldValues(raw); len(v) > 0 {
		return v[0]
	}
	return ""
}

// unitOf is the record's unit: the entry's own unit when it is one of
// ours, else the unit a message from systemd (or a coredump) is about,
// else, for a line matched by identifier (systemd-cat -t kubeup), the
// identifier.
func (j *Journal) unitOf(e JournalEntry) string {
	switch {
	case j.units[e.SystemUnit]:
		return e.SystemUnit
	case j.units[e.AboutUnit]:
		return e.AboutUnit
	case j.idents[e.Identifier]:
		return e.Identifier
	case e.SystemUnit != "":
		return e.SystemUnit
	}
	return e.Identifier
}

// Record turns an entry into a record.
func (j *Journal) Record(e JournalEntry) Record {
	return Record{Tag: JournalTag, Time: e.Time, Body: EncodeJournal(nil, j.cfg.Origin, JournalFields{
		Message: e.Message, Unit: j.unitOf(e), Identifier: e.Identifier, Priority: e.Priority, PID: e.PID,
	})}
}

// Run follows the journal until ctx ends or journalctl exits (an error: the
// supervisor restarts the task, which resumes after the last cursor).
func (j *Journal) Run(ctx context.Context) error {
	if !j.loaded {
		j.cursor = j.loadCursor()
		j.loaded = true
	}
	args := JournalFollowArgs(j.cfg.Units, j.cfg.Identifiers, j.cursor)
	parent := ctx
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pr, pw := io.Pipe()
	exited := make(chan error, 1)
	go func() {
		err := j.cfg.Run(ctx, args, pw)
		if err == nil {
			err = errors.New("journalctl exited")
		}
		pw.CloseWithError(err)
		exited <- err
	}()
	defer func() {
		cancel()
		pr.Close()
		<-exited
	}()

	br := bufio.NewReaderSize(pr, 64<<10)
	var (
		batch   []Record
		size    int
		last    string
		entries int
	)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		if err := j.cfg.Submit(ctx, batch); err != nil {
			return err
		}
		j.cursor = last
		batch, size = batch[:0], 0
		return j.saveCursor()
	}
	for {
		line, tooLong, err := readLine(br, maxJournalLine)
		if tooLong {
			j.cfg.Metrics.Dropped.WithLabelValues(DropTooLarge).Inc()
			j.cfg.Log.Warn("journal entry too large to forward; skipped", "limit", maxJournalLine)
		} else if len(line) > 0 {
			e, perr := ParseJournalEntry(line)
			if perr != nil {
				// journalctl prints valid JSON; a bad line is a bug worth
				// seeing, not a reason to stop forwarding.
				j.cfg.Log.Warn("unparsable journal line", "err", perr)
			} else {
				entries++
				j.cfg.Metrics.Read.WithLabelValues(SourceJournal).Inc()
				r := j.Record(e)
				batch = append(batch, r)
				size += len(r.Body)
				last = e.Cursor
			}
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if ferr := flush(); ferr != nil {
				return ferr
			}
			cancel()
			runErr := <-exited
			exited <- runErr
			if parent.Err() != nil {
				return nil
			}
			if j.cursor != "" && entries == 0 && strings.Contains(runErr.Error(), "cursor") {
				// A cursor journalctl cannot seek to (a corrupt state
				// file): start over from the current boot.
				j.cfg.Log.Warn("journal cursor refused; restarting from the current boot", "err", runErr)
				j.cursor = ""
				os.Remove(filepath.Join(j.cfg.StateDir, cursorFile))
			}
			return fmt.Errorf("follow the journal: %w", runErr)
		}
		if len(batch) >= maxBatch || size >= maxBatchBytes || br.Buffered() == 0 {
			if err := flush(); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("forward journal entries: %w", err)
			}
		}
	}
}

// readLine reads one line without its newline. A line longer than limit
// is consumed and reported as tooLong.
func readLine(br *bufio.Reader, limit int) (line []byte, tooLong bool, err error) {
	var buf []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(buf)+len(chunk) > limit {
			tooLong = true
			buf = buf[:0]
		} else if !tooLong {
			if buf == nil && err == nil {
				return bytes.TrimSuffix(chunk, []byte("\n")), false, nil
			}
			buf = append(buf, chunk...)
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if tooLong {
			return nil, true, err
		}
		return bytes.TrimSuffix(buf, []byte("\n")), false, err
	}
}

func (j *Journal) loadCursor() string {
	data, err := os.ReadFile(filepath.Join(j.cfg.StateDir, cursorFile))
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			j.cfg.Log.Warn("cannot read the journal cursor; starting from the current boot", "err", err)
		}
		return ""
	}
	return strings.TrimSpace(string(data))
}

func (j *Journal) saveCursor() error {
	if err := os.MkdirAll(j.cfg.StateDir, 0o700); err != nil {
		return fmt.Errorf("journal cursor: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(j.cfg.StateDir, cursorFile), []byte(j.cursor+"\n"), false); err != nil {
		return fmt.Errorf("journal cursor: %w", err)
	}
	return nil
}
