package addonmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"kubeup.dev/kubeup/systemd"
)

// Leader election, as kube-controller-manager does it: every master runs an
// addon manager, and the one holding the Lease does the work (the
// reconciler, the CSR approver and signer, the node labeler) while the
// others serve /healthz and /metrics and stand by.
const (
	leaseName      = "kubeup-addon-manager"
	leaseNamespace = "kube-system"
	// kube-controller-manager's defaults are 15s, 10s and 2s; these are
	// twice as long, because masters emulated without acceleration (TCG)
	// stall for seconds under load: a renewal missed for that must not hand
	// the work over (which restarts the process), and a failover a few
	// seconds slower costs little (a clean stop releases the Lease at once
	// anyway).
	leaseDuration = 30 * time.Second
	renewDeadline = 20 * time.Second
	retryPeriod   = 4 * time.Second
	// leaseCallTimeout bounds each call on the Lease (the clients have no
	// timeout of their own): a hung connection must neither stall a
	// standby's campaign, which the watchdog would take for a hang, nor
	// delay the release after a failed renewal.
	leaseCallTimeout = 5 * time.Second
)

// leaseKey is the Lease's namespace/name, for the logs and messages.
const leaseKey = leaseNamespace + "/" + leaseName

// electionIdentity is the identity the manager campaigns with: the
// machine's name, or the host name without one.
func electionIdentity(machine string) (string, error) {
	if machine != "" {
		return machine, nil
	}
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("leader election identity: no machine name in the config, and no host name: %w", err)
	}
	if host == "" {
		return "", errors.New("leader election identity: no machine name in the config, and an empty host name")
	}
	return host, nil
}

// election is what the addon manager knows of the leader election, for
// /healthz, the watchdog, the leader metric and the logs. Its lock
// (electionLock) reports every call the elector makes on the Lease, in the
// elector's goroutine, so that leading is set before the elector starts the
// work and is known even when the elector never gets to start it.
type election struct {
	identity string
	log      *slog.Logger
	metrics  *Metrics
	touch    func() // the watchdog's heartbeat, kept going while standing by
	now      func() time.Time

	mu       sync.Mutex
	leading  bool
	holder   string    // the holder last read or written
	lastRead time.Time // when the Lease was last read (or found missing) or written
}

func newElection(identity string, log *slog.Logger, m *Metrics, touch func()) *election {
	m.leader.Set(0)
	return &election{identity: identity, log: log, metrics: m, touch: touch, now: time.Now}
}

// Leading says whether this instance holds the Lease.
func (e *election) Leading() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// read records a read of the Lease.
func (e *election) read(rec *resourcelock.LeaderElectionRecord, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.heartbeat()
	switch {
	case apierrors.IsNotFound(err):
		e.lastRead, e.holder = e.now(), ""
	case err != nil:
	default:
		e.lastRead = e.now()
		e.observe(rec.HolderIdentity)
	}
}

// wrote records a write of the Lease: this instance acquired or renewed
// it (rec holds its identity) or released it (no holder).
func (e *election) wrote(rec resourcelock.LeaderElectionRecord, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.heartbeat()
	if err != nil {
		return
	}
	e.lastRead = e.now()
	e.observe(rec.HolderIdentity)
	if rec.HolderIdentity == e.identity && !e.leading {
		e.leading = true
		e.metrics.leader.Set(1)
		e.log.Info("became leader", "lease", leaseKey, "holder", e.identity)
		_ = systemd.Status("leading: lease " + leaseKey + " held")
	}
}

// observe notes the holder seen, and logs a standby's new leader.
func (e *election) observe(holder string) {
	if holder == e.holder {
		return
	}
	e.holder = holder
	if holder != "" && holder != e.identity && !e.leading {
		e.log.Info("waiting for leadership", "lease", leaseKey, "holder", holder)
		_ = systemd.Status(fmt.Sprintf("standing by: lease %s held by %s", leaseKey, holder))
	}
}

// heartbeat keeps the watchdog fed while standing by, where the campaign
// is the loop that makes progress; a leader's progress is its syncs.
func (e *election) heartbeat() {
	if !e.leading && e.touch != nil {
		e.touch()
	}
}

// stop records the end of the election: it reports whether this instance
// was leading, and the holder last seen.
func (e *election) stop() (wasLeading bool, holder string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	wasLeading, e.leading = e.leading, false
	e.metrics.leader.Set(0)
	return wasLeading, e.holder
}

// standbyHealth is /healthz while not leading: healthy while the campaign
// reads the Lease, so that it would take over.
func (e *election) standbyHealth() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.lastRead.IsZero() {
		return errors.New("not leading: the lease " + leaseKey + " not read yet (waiting for the API server)")
	}
	if age := e.now().Sub(e.lastRead); age > leaseDuration {
		return fmt.Errorf("not leading: the lease %s last read %s ago", leaseKey, age.Round(time.Second))
	}
	return nil
}

// electionLock is a Lease lock that reports its calls to the election and
// bounds each with leaseCallTimeout.
type electionLock struct {
	resourcelock.Interface
	e *election
}

func (l electionLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	rec, raw, err := l.Interface.Get(ctx)
	l.e.read(rec, err)
	return rec, raw, err
}

func (l electionLock) Create(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	err := l.Interface.Create(ctx, rec)
	l.e.wrote(rec, err)
	return err
}

func (l electionLock) Update(ctx context.Context, rec resourcelock.LeaderElectionRecord) error {
	ctx, cancel := context.WithTimeout(ctx, leaseCallTimeout)
	defer cancel()
	err := l.Interface.Update(ctx, rec)
	l.e.wrote(rec, err)
	return err
}

// newElector is the leader elector on the Lease: lead runs the work while
// leading, stopped is called when the election ends, lost or not.
func newElector(client kubernetes.Interface, e *election, lead func(context.Context), stopped func()) (*leaderelection.LeaderElector, error) {
	lock := electionLock{e: e, Interface: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: leaseNamespace, Name: leaseName},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.identity},
	}}
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            leaseName,
		LeaseDuration:   leaseDuration,
		RenewDeadline:   renewDeadline,
		RetryPeriod:     retryPeriod,
		ReleaseOnCancel: true, // a clean stop hands over at once
		Callbacks:       leaderelection.LeaderCallbacks{OnStartedLeading: lead, OnStoppedLeading: stopped},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	return le, nil
}
