package etcdsnapshot

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"
)

// A scheduled snapshot is named etcd-<UTC time>.db, so that names sort in
// time order.
const nameLayout = "20060102T150405Z"

var nameRE = regexp.MustCompile(`^etcd-[0-9]{8}T[0-9]{6}Z\.db$`)

// FileName is the name of a snapshot taken at t.
func FileName(t time.Time) string { return "etcd-" + t.UTC().Format(nameLayout) + ".db" }

// List returns the scheduled snapshots in dir, newest first. Other files
// (the status file, an uploaded restore, temporary files) are not listed.
func List(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.Type().IsRegular() && nameRE.MatchString(e.Name()) {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	slices.Reverse(names)
	return names, nil
}

// staleTemp: a temporary file this old was left by a run that was killed
// (a snapshot or an upload in progress is younger: they are bounded to
// minutes).
const staleTemp = time.Hour

// Prune removes all but the newest keep snapshots in dir, and temporary
// files left by killed runs, and returns the names it removed.
func Prune(dir string, keep int) ([]string, error) {
	names, err := List(dir)
	if err != nil {
		return nil, err
	}
	if keep < 1 {
		keep = 1 // never the last one
	}
	var removed []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") || !strings.HasSuffix(e.Name(), ".tmp") {
			continue
		}
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > staleTemp {
			if os.Remove(filepath.Join(dir, e.Name())) == nil {
				removed = append(removed, e.Name())
			}
		}
	}
	for _, n := range names[min(keep, len(names)):] {
		if err := os.Remove(filepath.Join(dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return removed, err
		}
		removed = append(removed, n)
	}
	return removed, nil
}

// StatusFile, in the snapshot directory, records the outcome of the last
// scheduled snapshots; the agent's metrics read it at scrape time.
const StatusFile = "status.json"

// Status is the last success and the last failure of scheduled snapshots.
type Status struct {
	LastSuccess time.Time `json:"lastSuccess,omitzero"`
	// LastFile and LastSize are the last good snapshot's.
	LastFile string `json:"lastFile,omitempty"`
	LastSize int64  `json:"lastSizeBytes,omitempty"`
	// LastDuration is how long the last good snapshot took, in seconds.
	LastDuration float64   `json:"lastDurationSeconds,omitempty"`
	LastFailure  time.Time `json:"lastFailure,omitzero"`
	LastError    string    `json:"lastError,omitempty"`
}

// ReadStatus reads dir's status file; without one (no snapshot attempted
// yet) it is the zero Status.
func ReadStatus(dir string) (Status, error) {
	var st Status
	data, err := os.ReadFile(filepath.Join(dir, StatusFile))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return st, fmt.Errorf("%s: %w", filepath.Join(dir, StatusFile), err)
	}
	return st, nil
}

// WriteStatus replaces dir's status file atomically (temporary file,
// sync, rename), so a reader never sees half of it.
func WriteStatus(dir string, st Status) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+StatusFile+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, StatusFile)); err != nil {
		return err
	}
	return syncDir(dir)
}

// DueSlack: a snapshot is due this much before its interval is over. The
// timer looks every 10 minutes (a minute or so either way), so without it
// a run that comes a few seconds early would wait a whole extra period.
const DueSlack = 5 * time.Minute

// Due says whether a scheduled snapshot is due at now, and why (or why
// not): never when interval is 0 (snapshots are off); always when none has
// succeeded, or the last success is in the future (the clock went back);
// otherwise once the last success is older than interval, less DueSlack.
func Due(st Status, interval time.Duration, now time.Time) (bool, string) {
	switch {
	case interval <= 0:
		return false, "scheduled snapshots are off (spec.etcd.snapshotInterval is 0s)"
	case st.LastSuccess.IsZero():
		return true, "no snapshot has succeeded yet"
	case st.LastSuccess.After(now):
		return true, fmt.Sprintf("the last snapshot (%s) is in the future: the clock went back", st.LastSuccess.UTC().Format(time.RFC3339))
	}
	age := now.Sub(st.LastSuccess)
	if age+DueSlack >= interval {
		return true, fmt.Sprintf("the last snapshot is %s old (interval %s)", age.Round(time.Second), interval)
	}
	return false, fmt.Sprintf("the last snapshot is %s old, the next is due in %s (interval %s)",
		age.Round(time.Second), (interval - age - DueSlack).Round(time.Second), interval)
}
