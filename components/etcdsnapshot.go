package components

import (
	"time"

	"kubeup.dev/kubeup/systemd"
)

// EtcdSnapshot is the masters' scheduled etcd snapshot: a oneshot service,
// `kubeup-agent etcd-snapshot`, that a timer starts every few minutes. The
// command takes a snapshot of the local member only when the last good one
// is older than the cluster's interval (spec.etcd.snapshotInterval), so the
// timer, baked into the image, is the same for every cluster. The command
// verifies each snapshot, keeps the newest spec.etcd.snapshotsKept and
// records the outcome, which the agent serves as kubeup_etcd_snapshot_*
// metrics.
type EtcdSnapshot struct{}

// EtcdSnapshotDir holds a master's snapshots; it is outside etcd's data
// directory, which a restore moves aside.
const EtcdSnapshotDir = "/var/lib/kubeup/etcd-snapshots"

// The timer: a first look 10 minutes after boot (the cluster is up by
// then), then 10 minutes after each run, give or take a minute so that
// the masters do not stream their snapshots at the same moment.
const (
	etcdSnapshotFirst   = 10 * time.Minute
	etcdSnapshotEvery   = 10 * time.Minute
	etcdSnapshotSlack   = time.Minute
	etcdSnapshotTimeout = 15 * time.Minute
)

func (EtcdSnapshot) Name() string { return "kubeup-etcd-snapshot" }
func (EtcdSnapshot) Description() string {
	return "kubeup: snapshot of the local etcd member, when one is due"
}
func (EtcdSnapshot) Roles() []Role { return []Role{Master} }

// Unit is the oneshot run. It is ordered after etcd but does not want it:
// a run must never start etcd (during a restore, etcd is stopped on
// purpose while its data directory is swapped); with etcd down the run
// fails and says so.
func (e EtcdSnapshot) Unit(role Role) systemd.Unit {
	s := systemd.Service{
		After:           []string{Etcd{}.Name() + ".service"},
		TimeoutStartSec: etcdSnapshotTimeout,
		Limits:          map[string]string{"MemoryMax": "128M"},
	}
	controlPlaneHardening(&s, EtcdSnapshotDir)
	return oneshot(e, role, AgentBinary+" etcd-snapshot", s)
}

// Timer starts the run. It has no condition on the env file: a timer whose
// condition fails when its target starts (before cloud-init has written
// the file, at first boot) is never started again; the service's own
// condition skips a run on a machine that is not personalised.
func (e EtcdSnapshot) Timer(role Role) systemd.Unit {
	return systemd.Timer{
		Description:        "kubeup: look every 10 minutes whether an etcd snapshot is due",
		PartOf:             []string{RoleTarget(role)},
		OnBootSec:          etcdSnapshotFirst,
		OnUnitInactiveSec:  etcdSnapshotEvery,
		AccuracySec:        etcdSnapshotSlack,
		RandomizedDelaySec: etcdSnapshotSlack,
		Service:            e.Name() + ".service",
	}.Unit(e.Name())
}

// ImageFiles: the snapshot directory, root only (a snapshot is the whole
// datastore, Secrets included).
func (EtcdSnapshot) ImageFiles() []File {
	return []File{{Path: "/usr/lib/tmpfiles.d/kubeup-etcd-snapshots.conf", Mode: 0o644, Content: []byte(
		"# The masters' etcd snapshots (kubeup-etcd-snapshot.timer).\nd " + EtcdSnapshotDir + " 0700 root root -\n")}}
}

// Flags: the run reads the agent's configuration (etcd client, member,
// snapshot directory, interval and count).
func (EtcdSnapshot) Flags(Context) Flags { return Flags{"config": AgentConfigPath} }

func (EtcdSnapshot) Files(Context) ([]File, error) { return nil, nil }

// Health: a run has no endpoint; the agent's kubeup_etcd_snapshot_*
// metrics and the service's exit status say how it went.
func (EtcdSnapshot) Health() Endpoint { return Endpoint{Auth: AuthNone} }

func (EtcdSnapshot) Metrics() *Endpoint { return nil }

func (EtcdSnapshot) Certificates(Role) []string {
	return []string{"etcd-ca", "etcd-healthcheck-client"}
}
