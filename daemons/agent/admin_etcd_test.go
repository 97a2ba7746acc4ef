//go:build !noetcd

package agent

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot/snapshottest"
)

// masterDaemon is a test daemon configured as a master with an etcd
// member and snapshots under a temporary directory.
func masterDaemon(t *testing.T) (*testDaemon, *httptest.Server, *Client) {
	t.Helper()
	root := t.TempDir()
	member := testMember(filepath.Join(root, "etcd"))
	td := newTestDaemon(t, nil, func(c *agentconfig.Config) {
		c.Machine, c.Role = "master-1", agentconfig.RoleMaster
		c.Units = append(c.Units, "etcd.service")
		c.Etcd = &agentconfig.Etcd{Endpoints: []string{member.ClientURL},
			CAFile: "/pki/etcd/ca.crt", CertFile: "/pki/etcd/hc.crt", KeyFile: "/pki/etcd/hc.key",
			Member:    &member,
			Snapshots: &agentconfig.EtcdSnapshots{Dir: filepath.Join(root, "snapshots"), Interval: "1h", Keep: 3}}
	})
	td.commands.do = func(_ string, args []string) error {
		writeFile(t, filepath.Join(args[indexOf(args, "--data-dir")+1], "member", "snap", "db"), []byte("new"))
		return nil
	}
	srv := serve(t, td)
	cert, key := td.pki.ca.issue(t, "kubeup-admin", []string{AdminGroup}, false, time.Time{})
	c, err := NewClient(srv.URL, td.pki.ca.pem, cert, key)
	if err != nil {
		t.Fatal(err)
	}
	return td, srv, c
}

// GET /v1/etcd/snapshot streams what etcd sends; the host's client turns a
// failure after the start into an error, so nothing half-fetched is kept.
func TestEtcdSnapshotEndpoint(t *testing.T) {
	t.Parallel()
	td, _, c := masterDaemon(t)
	td.etcd.data = snapshottest.Snapshot(6, 3)
	out := t.TempDir()
	fetch := func() (etcdsnapshot.Info, error) {
		rc, err := c.EtcdSnapshot(context.Background())
		if err != nil {
			return etcdsnapshot.Info{}, err
		}
		defer rc.Close()
		return etcdsnapshot.Save(out, "fetched.db", rc)
	}
	info, err := fetch()
	if err != nil || info.Size != int64(len(td.etcd.data)) {
		t.Fatalf("fetch: %+v %v", info, err)
	}

	td.etcd.err = errEtcdDown
	if _, err := fetch(); err == nil || !strings.Contains(err.Error(), "snapshot stream failed: context deadline exceeded (etcd down)") {
		t.Errorf("stream failing midway: %v", err)
	}
	td.etcd.openErr = errEtcdDown
	if _, err := fetch(); err == nil || !strings.Contains(err.Error(), "502") {
		t.Errorf("etcd down: %v", err)
	}
}

// POST /v1/etcd/restore through the host's client: the steps on success,
// 400 with the failed step for a corrupt upload, 409 while one runs.
func TestEtcdRestoreEndpoint(t *testing.T) {
	t.Parallel()
	td, _, c := masterDaemon(t)
	snap := snapshottest.Snapshot(3, 7)
	res, err := c.RestoreEtcd(context.Background(), bytes.NewReader(snap), int64(len(snap)))
	if err != nil || len(res.Steps) != 5 || res.Member != "master-1" || res.Snapshot.Size != int64(len(snap)) {
		t.Fatalf("restore: %v %+v", err, res)
	}
	if jobs := td.control.done(); strings.Join(jobs, ",") != "stop etcd.service,start etcd.service" {
		t.Errorf("jobs %v", jobs)
	}

	bad := bytes.Clone(snap)
	bad[5000] ^= 1
	res, err = c.RestoreEtcd(context.Background(), bytes.NewReader(bad), int64(len(bad)))
	if err == nil || !strings.Contains(err.Error(), "400") || res == nil || len(res.Steps) != 1 ||
		!strings.Contains(res.Steps[0].Error, "sha256") {
		t.Errorf("corrupt upload: %v %+v", err, res)
	}

	td.restoring <- struct{}{}
	_, err = c.RestoreEtcd(context.Background(), bytes.NewReader(snap), int64(len(snap)))
	<-td.restoring
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Errorf("concurrent restore: %v", err)
	}
	if n := len(td.control.done()); n != 2 {
		t.Errorf("%d jobs after refused restores, want 2", n)
	}
}

// A master's status carries the snapshot status file.
func TestStatusHasSnapshots(t *testing.T) {
	t.Parallel()
	td, _, c := masterDaemon(t)
	when := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	writeFile(t, filepath.Join(td.cfg.Etcd.Snapshots.Dir, "x"), nil)
	if err := etcdsnapshot.WriteStatus(td.cfg.Etcd.Snapshots.Dir, etcdsnapshot.Status{LastSuccess: when, LastFile: "etcd-20261204T100000Z.db"}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.EtcdSnapshots == nil || !st.EtcdSnapshots.LastSuccess.Equal(when) {
		t.Errorf("status snapshots %+v", st.EtcdSnapshots)
	}
}

// POST /v1/etcd/members/{name}/readd: admin only, a peer URL that is one,
// never the machine's own member; the member list comes back.
func TestEtcdReaddEndpoint(t *testing.T) {
	t.Parallel()
	td, _, c := masterDaemon(t)
	ctx := context.Background()
	members, err := c.ReaddEtcdMember(ctx, "master-0", "https://10.77.0.10:2380")
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 2 || members[1].Started || members[1].PeerURLs[0] != "https://10.77.0.10:2380" {
		t.Errorf("members %+v: want the new, unstarted member listed", members)
	}
	for _, tc := range []struct{ name, peer, want string }{
		{"master-0", "http://10.77.0.10:2380", "want https://IP:PORT"},
		{"master-0", "https://10.77.0.10", "want https://IP:PORT"},
		{"master-1", "https://10.77.0.11:2380", "another master's agent"},
	} {
		if _, err := c.ReaddEtcdMember(ctx, tc.name, tc.peer); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("re-add %s at %s: %v, want an error with %q", tc.name, tc.peer, err, tc.want)
		}
	}
	if want := []string{"master-0 https://10.77.0.10:2380"}; len(td.readds) != 1 || td.readds[0] != want[0] {
		t.Errorf("re-adds %v, want %v", td.readds, want)
	}
}
