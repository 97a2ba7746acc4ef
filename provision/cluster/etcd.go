package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/health"
)

// The units a restore stops and starts, on every master.
var (
	etcdUnit              = components.Etcd{}.Name() + ".service"
	apiServerUnit         = components.APIServer{}.Name() + ".service"
	controllerManagerUnit = components.ControllerManager{}.Name() + ".service"
	schedulerUnit         = components.Scheduler{}.Name() + ".service"
)

// etcdTimeout bounds a snapshot fetch and each step of a restore (a start
// waits for the unit's readiness probe).
const etcdTimeout = 15 * time.Minute

// SnapshotResult is what `kubeup etcd snapshot` fetched.
type SnapshotResult struct {
	Machine string
	Path    string
	Info    etcdsnapshot.Info
	Took    time.Duration
}

// EtcdSnapshot fetches a fresh snapshot of etcd from the first master's
// agent into out: written beside it, verified (etcd's sha256, bbolt's meta
// pages) and only then renamed to out, so a failure leaves nothing at out
// (and an older file there untouched).
func EtcdSnapshot(ctx context.Context, dataDir, name, out string) (*SnapshotResult, error) {
	st, err := LoadState(dataDir, name)
	if err != nil {
		return nil, err
	}
	b, err := LoadBundle(dataDir, name)
	if err != nil {
		return nil, err
	}
	masters := mastersOf(st)
	if len(masters) == 0 {
		return nil, fmt.Errorf("cluster %q has no master", name)
	}
	c, err := AgentClient(ctx, st, masters[0], b)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, etcdTimeout)
	defer cancel()
	start := time.Now()
	rc, err := c.EtcdSnapshot(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot of etcd on %s: %w", masters[0].Name, err)
	}
	defer rc.Close()
	abs, err := filepath.Abs(out)
	if err != nil {
		return nil, err
	}
	info, err := etcdsnapshot.Save(filepath.Dir(abs), filepath.Base(abs), rc)
	if err != nil {
		return nil, fmt.Errorf("snapshot of etcd on %s: %w", masters[0].Name, err)
	}
	return &SnapshotResult{Machine: masters[0].Name, Path: abs, Info: info, Took: time.Since(start)}, nil
}

func mastersOf(st *State) []MachineState {
	var out []MachineState
	for _, m := range st.Machines {
		if m.Role == config.RoleMaster {
			out = append(out, m)
		}
	}
	return out
}

// ErrBadSnapshot: the file given to restore is not a whole etcd snapshot
// (or cannot be read); nothing in the cluster was touched.
var ErrBadSnapshot = errors.New("bad snapshot file")

// restoreAgent is what a restore needs of a master's agent.
type restoreAgent interface {
	StartUnit(ctx context.Context, unit string) error
	StopUnit(ctx context.Context, unit string) error
	RestartUnit(ctx context.Context, unit string) error
	RestoreEtcd(ctx context.Context, snapshot io.Reader, size int64) (*agent.RestoreResult, error)
}

// ErrRestoreRemote: a cloud cluster's etcd cannot be restored from the
// host (not yet: it would need a way to its masters' agents that does not
// pass through the API servers it stops).
var ErrRestoreRemote = errors.New("etcd restore is not supported on a cloud cluster")

// etcdRestore puts a cluster back to a snapshot: the steps run in order
// and print as they finish, each with its time.
type etcdRestore struct {
	masters  []string
	agents   map[string]restoreAgent
	waitAPI  func(context.Context) error
	progress io.Writer
	now      func() time.Time
}

// EtcdRestore restores the snapshot in file on every master (each gets
// the same snapshot and rebuilds its own member from it) with the API
// servers stopped, then starts them again, restarts the controller-manager
// and the scheduler (their caches hold objects newer than the snapshot),
// and waits for the API server's /readyz. It prints every step with its
// time to progress. A file that is not a whole snapshot is refused before
// anything is touched (ErrBadSnapshot).
func EtcdRestore(ctx context.Context, dataDir, name, file string, progress io.Writer) error {
	st, err := LoadState(dataDir, name)
	if err != nil {
		return err
	}
	if st.Cloud != nil {
		return fmt.Errorf("%w: %s runs on %s, where the host reaches the masters' agents only through the API servers, "+
			"which a restore stops (README: Backups); `kubeup etcd snapshot` works there", ErrRestoreRemote, name, st.Provider)
	}
	b, err := LoadBundle(dataDir, name)
	if err != nil {
		return err
	}
	r := &etcdRestore{agents: map[string]restoreAgent{}, progress: progress, now: time.Now}
	for _, m := range mastersOf(st) {
		c, err := AgentClient(ctx, st, m, b)
		if err != nil {
			return err
		}
		r.masters = append(r.masters, m.Name)
		r.agents[m.Name] = c
	}
	if len(r.masters) == 0 {
		return fmt.Errorf("cluster %q has no master", name)
	}
	r.waitAPI = func(ctx context.Context) error {
		_, kc, err := Kubeconfig(dataDir, name)
		if err != nil {
			return err
		}
		cs, err := health.Clientset(kc)
		if err != nil {
			return err
		}
		return health.WaitAPIServer(ctx, cs)
	}
	return r.run(ctx, file)
}

type restoreStep struct {
	name string
	do   func(context.Context) error
}

func (r *etcdRestore) run(ctx context.Context, file string) error {
	var info etcdsnapshot.Info
	masters := strings.Join(r.masters, ", ")
	steps := []restoreStep{
		{"verify " + file, func(context.Context) error {
			var err error
			if info, err = etcdsnapshot.Verify(file); err != nil {
				return fmt.Errorf("%w: %w", ErrBadSnapshot, err)
			}
			return nil
		}},
		{"stop kube-apiserver on " + masters, r.onMasters(func(ctx context.Context, a restoreAgent) error {
			return a.StopUnit(ctx, apiServerUnit)
		})},
		// On every master at once: with several, each member's etcd
		// starts only once a quorum of restored members has.
		{"restore etcd on " + masters, r.onMasters(func(ctx context.Context, a restoreAgent) error {
			return r.restoreOn(ctx, a, file, info.Size)
		})},
		{"start kube-apiserver on " + masters, r.onMasters(func(ctx context.Context, a restoreAgent) error {
			return a.StartUnit(ctx, apiServerUnit)
		})},
		{"restart kube-controller-manager and kube-scheduler on " + masters, r.onMasters(func(ctx context.Context, a restoreAgent) error {
			if err := a.RestartUnit(ctx, controllerManagerUnit); err != nil {
				return err
			}
			return a.RestartUnit(ctx, schedulerUnit)
		})},
		{"wait for the API server's /readyz", r.waitAPI},
	}
	begin := r.now()
	for i, s := range steps {
		start := r.now()
		sctx, cancel := context.WithTimeout(ctx, etcdTimeout)
		err := s.do(sctx)
		cancel()
		took := r.now().Sub(start).Round(100 * time.Millisecond)
		if err != nil {
			fmt.Fprintf(r.progress, "  FAILED %s (%s): %v\n", s.name, took, err)
			if i >= 1 { // API servers may be stopped: bring them back
				r.bringBack(ctx)
			}
			return fmt.Errorf("etcd restore: %s: %w", s.name, err)
		}
		fmt.Fprintf(r.progress, "  %-8s %s\n", took, s.name)
		if i == 0 {
			fmt.Fprintf(r.progress, "           (%d bytes, sha256 %s)\n", info.Size, info.SHA256)
		}
	}
	fmt.Fprintf(r.progress, "etcd restored from %s on %s in %s\n", file, masters, r.now().Sub(begin).Round(100*time.Millisecond))
	return nil
}

// restoreOn uploads the snapshot to one master and prints its agent's steps.
func (r *etcdRestore) restoreOn(ctx context.Context, a restoreAgent, file string, size int64) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := a.RestoreEtcd(ctx, f, size)
	if res != nil {
		for _, s := range res.Steps {
			mark := ""
			if s.Error != "" {
				mark = "FAILED: " + s.Error
			}
			fmt.Fprintf(r.progress, "           %s: %-6s %s %s\n", res.Machine, fmt.Sprintf("%.1fs", s.Seconds), s.Step, mark)
		}
	}
	return err
}

// onMasters runs f on every master's agent at once and returns the
// failures, each naming its master.
func (r *etcdRestore) onMasters(f func(context.Context, restoreAgent) error) func(context.Context) error {
	return func(ctx context.Context) error {
		errs := make([]error, len(r.masters))
		var g errgroup.Group
		for i, m := range r.masters {
			g.Go(func() error {
				if err := f(ctx, r.agents[m]); err != nil {
					errs[i] = fmt.Errorf("%s: %w", m, err)
				}
				return nil
			})
		}
		g.Wait()
		return errors.Join(errs...)
	}
}

// bringBack starts etcd and the API servers after a failed step, so that
// a restore that failed leaves the cluster serving what it can (the
// snapshot's data, or the old data if the swap did not happen). A start
// of a running unit does nothing.
func (r *etcdRestore) bringBack(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), etcdTimeout)
	defer cancel()
	err := r.onMasters(func(ctx context.Context, a restoreAgent) error {
		if err := a.StartUnit(ctx, etcdUnit); err != nil {
			return err
		}
		return a.StartUnit(ctx, apiServerUnit)
	})(ctx)
	if err != nil {
		fmt.Fprintf(r.progress, "  could not start etcd and kube-apiserver again: %v\n", err)
		return
	}
	fmt.Fprintf(r.progress, "  etcd and kube-apiserver started again on %s\n", strings.Join(r.masters, ", "))
}
