package addonmanager

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

func TestElectionIdentity(t *testing.T) {
	t.Parallel()
	if id, err := electionIdentity("master-2"); err != nil || id != "master-2" {
		t.Errorf("electionIdentity(master-2) = %q, %v", id, err)
	}
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	if id, err := electionIdentity(""); err != nil || id != host {
		t.Errorf("electionIdentity(\"\") = %q, %v; want the host name %q", id, err, host)
	}
}

// TestElectionState follows a standby that takes over and stops: the leader
// metric (on the registry /metrics serves), the logs, the standby's
// /healthz and the watchdog's heartbeat.
func TestElectionState(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	m := NewMetrics()
	touched := 0
	e := newElection("master-2", slog.New(slog.NewTextHandler(&logs, nil)), m, func() { touched++ })
	now := time.Unix(1_700_000_000, 0)
	e.now = func() time.Time { return now }
	leaderMetric := func() float64 {
		t.Helper()
		// Through the registry: the gauge /metrics exposes.
		if n, err := testutil.GatherAndCount(m.Registry, "kubeup_addon_manager_leader"); err != nil || n != 1 {
			t.Fatalf("kubeup_addon_manager_leader: %d series, %v", n, err)
		}
		return testutil.ToFloat64(m.leader)
	}
	if got := leaderMetric(); got != 0 {
		t.Errorf("leader metric at start = %v, want 0", got)
	}
	if err := e.standbyHealth(); err == nil || !strings.Contains(err.Error(), "not read yet") {
		t.Errorf("standbyHealth before any read = %v, want an error", err)
	}

	// Standing by: another instance holds the Lease.
	e.read(nil, errors.New("connection refused"))
	if err := e.standbyHealth(); err == nil {
		t.Error("standbyHealth after a failed read = nil, want an error")
	}
	held := &resourcelock.LeaderElectionRecord{HolderIdentity: "master-1", LeaseDurationSeconds: 30}
	e.read(held, nil)
	e.read(held, nil)
	if e.Leading() || leaderMetric() != 0 {
		t.Errorf("standing by: Leading() = %v, metric %v; want false, 0", e.Leading(), leaderMetric())
	}
	if err := e.standbyHealth(); err != nil {
		t.Errorf("standbyHealth after reading the Lease = %v", err)
	}
	if n := strings.Count(logs.String(), "waiting for leadership"); n != 1 ||
		!strings.Contains(logs.String(), "lease=kube-system/kubeup-addon-manager holder=master-1") {
		t.Errorf("want one \"waiting for leadership\" with the lease and holder:\n%s", logs.String())
	}
	if touched != 3 {
		t.Errorf("heartbeat touched %d times by 3 calls standing by", touched)
	}
	now = now.Add(leaseDuration + time.Second)
	if err := e.standbyHealth(); err == nil || !strings.Contains(err.Error(), "31s ago") {
		t.Errorf("standbyHealth with the Lease last read 31s ago = %v, want an error", err)
	}

	// A failed write changes nothing; a successful one is the takeover.
	mine := resourcelock.LeaderElectionRecord{HolderIdentity: "master-2", LeaseDurationSeconds: 30}
	e.wrote(mine, apierrors.NewConflict(schema.GroupResource{Group: "coordination.k8s.io", Resource: "leases"}, leaseName, errors.New("changed")))
	if e.Leading() || leaderMetric() != 0 {
		t.Fatal("leading after a failed write")
	}
	e.wrote(mine, nil)
	if !e.Leading() || leaderMetric() != 1 {
		t.Errorf("after acquiring: Leading() = %v, metric %v; want true, 1", e.Leading(), leaderMetric())
	}
	if !strings.Contains(logs.String(), `msg="became leader" lease=kube-system/kubeup-addon-manager holder=master-2`) {
		t.Errorf("no \"became leader\" log:\n%s", logs.String())
	}
	// Leading, the Lease calls no longer feed the watchdog: the syncs do.
	before := touched
	e.wrote(mine, nil)
	e.read(&mine, nil)
	if touched != before {
		t.Errorf("heartbeat touched %d times while leading", touched-before)
	}
	if n := strings.Count(logs.String(), "became leader"); n != 1 {
		t.Errorf("\"became leader\" logged %d times, want once", n)
	}

	// Someone else's record read while leading, then the end: lost to it.
	e.read(&resourcelock.LeaderElectionRecord{HolderIdentity: "intruder"}, nil)
	was, holder := e.stop()
	if !was || holder != "intruder" || e.Leading() || leaderMetric() != 0 {
		t.Errorf("stop() = %v, %q; Leading() = %v, metric %v; want true, intruder, false, 0", was, holder, e.Leading(), leaderMetric())
	}
	if was, _ := e.stop(); was {
		t.Error("stop() again says it was leading")
	}
}
