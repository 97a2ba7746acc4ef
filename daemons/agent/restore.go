package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
)

// DefaultEtcdutl is etcdutl in the master image (a link to the etcd
// multi-call binary).
const DefaultEtcdutl = "/usr/local/bin/etcdutl"

// RestoreRevisionBump is how far a restore moves etcd's revision past the
// snapshot's, with the old revisions marked compacted (etcdutl's
// --bump-revision and --mark-compacted, as the Kubernetes documentation
// advises): every watcher in the cluster, whose last resourceVersion may be
// newer than the snapshot, gets "compacted" and lists again instead of
// waiting for revisions that the restored etcd hands out anew to other
// writes. A billion is the documented figure, far more than any cluster
// writes between a snapshot and its restore.
const RestoreRevisionBump = 1_000_000_000

// restoreStepTimeout bounds each step after the upload: etcd's start
// (TimeoutStartSec=5min) and etcdutl's rewrite of a large database.
const restoreStepTimeout = 10 * time.Minute

// restoreFile is where an uploaded snapshot is kept in the snapshot
// directory (the last restore's, replaced by the next).
const restoreFile = "restore.db"

// CommandFunc runs a program and returns its combined output.
type CommandFunc func(ctx context.Context, name string, args ...string) ([]byte, error)

func execCommand(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return out, nil
}

// RestoreStep is one step of a restore, as POST /v1/etcd/restore reports.
type RestoreStep struct {
	Step    string  `json:"step"`
	Seconds float64 `json:"seconds"`
	Error   string  `json:"error,omitempty"`
}

// RestoreResult is POST /v1/etcd/restore's answer.
type RestoreResult struct {
	Machine  string            `json:"machine"`
	Member   string            `json:"member"`
	Snapshot etcdsnapshot.Info `json:"snapshot"`
	// DataDir is the restored data directory; PreviousDataDir is where
	// the one it replaced was moved (empty when there was none).
	DataDir         string        `json:"dataDir"`
	PreviousDataDir string        `json:"previousDataDir,omitempty"`
	Steps           []RestoreStep `json:"steps"`
	Error           string        `json:"error,omitempty"`
}

// ErrBadSnapshot: an uploaded snapshot failed verification; nothing on the
// machine was changed.
var ErrBadSnapshot = errors.New("bad snapshot")

// etcdRestore rebuilds the local member's data directory from a snapshot.
// The slow and fallible part, etcdutl writing a new data directory, runs
// beside the old one while etcd still runs; only the swap happens with
// etcd stopped. So a bad snapshot or a failing etcdutl leaves etcd as it
// was, and etcd is down for a rename and its own start.
type etcdRestore struct {
	machine string
	member  agentconfig.EtcdMember
	dir     string // the snapshot directory, for the upload
	etcdutl string
	units   UnitControl
	run     CommandFunc
	now     func() time.Time
	log     *slog.Logger
}

// EtcdutlArgs is the restore's etcdutl command line (after the binary).
func EtcdutlArgs(m agentconfig.EtcdMember, snapshot, dataDir string) []string {
	return []string{"snapshot", "restore", snapshot,
		"--data-dir", dataDir,
		"--name", m.Name,
		"--initial-cluster", m.InitialCluster,
		"--initial-cluster-token", m.InitialClusterToken,
		"--initial-advertise-peer-urls", m.InitialAdvertisePeerURLs,
		"--bump-revision", strconv.Itoa(RestoreRevisionBump),
		"--mark-compacted",
	}
}

// Run receives the snapshot from body and restores it. The steps run in
// order and stop at the first failure; the result lists those done, each
// with its duration. Once the upload is verified, the steps run to the end
// even if ctx ends: a restore stopped between stopping etcd and starting
// it would leave the machine without one.
func (r *etcdRestore) Run(ctx context.Context, body io.Reader) (RestoreResult, error) {
	m := r.member
	staging, previous := m.DataDir+".restoring", m.DataDir+".before-restore"
	res := RestoreResult{Machine: r.machine, Member: m.Name, DataDir: m.DataDir}
	snapshot := filepath.Join(r.dir, restoreFile)
	steps := []struct {
		name string
		do   func(context.Context) error
	}{
		{"receive and verify the snapshot", func(context.Context) error {
			info, err := etcdsnapshot.Save(r.dir, restoreFile, body)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
			}
			res.Snapshot = info
			return nil
		}},
		{"etcdutl snapshot restore into " + staging, func(ctx context.Context) error {
			if err := os.RemoveAll(staging); err != nil {
				return err
			}
			_, err := r.run(ctx, r.etcdutl, EtcdutlArgs(m, snapshot, staging)...)
			return err
		}},
		{"stop " + m.Unit, func(ctx context.Context) error { return r.units.StopUnit(ctx, m.Unit) }},
		{fmt.Sprintf("move %s to %s, %s to %s", m.DataDir, previous, staging, m.DataDir), func(context.Context) error {
			moved, err := swapDirs(m.DataDir, staging, previous)
			if moved {
				res.PreviousDataDir = previous
			}
			return err
		}},
		{"start " + m.Unit, func(ctx context.Context) error { return r.units.StartUnit(ctx, m.Unit) }},
	}
	for i, s := range steps {
		start := r.now()
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if i > 0 {
			sctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), restoreStepTimeout)
		}
		err := s.do(sctx)
		cancel()
		step := RestoreStep{Step: s.name, Seconds: r.now().Sub(start).Seconds()}
		if err != nil {
			step.Error = err.Error()
		}
		res.Steps = append(res.Steps, step)
		r.log.Info("etcd restore", "step", s.name, "seconds", step.Seconds, "err", step.Error)
		if err != nil {
			res.Error = fmt.Sprintf("%s: %v", s.name, err)
			if res.PreviousDataDir != "" {
				res.Error += fmt.Sprintf(" (the data directory before the restore is %s)", previous)
			}
			return res, fmt.Errorf("etcd restore: %s: %w", s.name, err)
		}
	}
	return res, nil
}

// swapDirs moves dataDir to previous (replacing an older one) and staging
// to dataDir; moved says whether dataDir existed and was moved.
func swapDirs(dataDir, staging, previous string) (moved bool, err error) {
	if err := os.RemoveAll(previous); err != nil {
		return false, err
	}
	if err := os.Rename(dataDir, previous); err == nil {
		moved = true
	} else if !errors.Is(err, os.ErrNotExist) {
		return false, err
	}
	if err := os.Rename(staging, dataDir); err != nil {
		return moved, err
	}
	// etcd wants its data directory private (it warns otherwise).
	if err := os.Chmod(dataDir, 0o700); err != nil {
		return moved, err
	}
	return moved, syncDir(filepath.Dir(dataDir))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
