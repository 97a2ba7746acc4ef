//go:build !noetcd

package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/test/kubetest"
)

type fakeEtcd struct {
	mu     sync.Mutex
	res    map[string]EtcdMemberStatus
	list   []etcdMember
	listed []string // the endpoints listed through
}

func (f *fakeEtcd) check(_ context.Context, ep string) EtcdMemberStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.res[ep]
}

func (f *fakeEtcd) members(_ context.Context, ep string) ([]etcdMember, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listed = append(f.listed, ep)
	return f.list, nil
}

func (f *fakeEtcd) set(res map[string]EtcdMemberStatus) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ep, st := range res {
		f.res[ep] = st
	}
}

// syncBuffer is a log destination safe to read while the test runs.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

const (
	ep0, ep1, ep2 = "https://10.77.0.10:2379", "https://10.77.0.11:2379", "https://10.77.0.12:2379"
	// Member IDs of master-0, master-1 and master-2.
	id0, id1, id2 = 0x8e9e05c52164694d, 0x91bc3c398fb3c146, 0xfd422379fda50e48
)

func TestEtcdHealthMetrics(t *testing.T) {
	f := &fakeEtcd{res: map[string]EtcdMemberStatus{
		ep0: {Member: "master-0", Reachable: true, Healthy: true, HasLeader: true, DBSize: 4 << 20, id: id0, leaderID: id0, RaftTerm: 2, read: true},
		ep1: {Reachable: true, Healthy: false, HasLeader: true, DBSize: 2 << 20, Error: "alarm NOSPACE", id: id1, leaderID: id0, RaftTerm: 2, read: true},
	}, list: []etcdMember{{ID: id0, Name: "master-0"}, {ID: id1, Name: "master-1"}, {ID: id2, Name: "master-2"}}}
	var logs syncBuffer
	e := &etcdHealth{endpoints: []string{ep0, ep1, ep2},
		check: f.check, list: f.members, log: slog.New(slog.NewTextHandler(&logs, nil)), names: map[string]string{}}
	if n := testutil.CollectAndCount(e); n != 0 {
		t.Errorf("%d metrics before the first poll", n)
	}
	e.poll(context.Background())
	want := `
# HELP kubeup_etcd_db_size_bytes Size of the etcd member's database file.
# TYPE kubeup_etcd_db_size_bytes gauge
kubeup_etcd_db_size_bytes{member="master-0"} 4.194304e+06
kubeup_etcd_db_size_bytes{member="master-1"} 2.097152e+06
# HELP kubeup_etcd_has_leader 1 when every etcd member that answered knows a leader (and at least one answered).
# TYPE kubeup_etcd_has_leader gauge
kubeup_etcd_has_leader 1
# HELP kubeup_etcd_leader 1 for the etcd leader as the members that answered see it, 0 for the other members.
# TYPE kubeup_etcd_leader gauge
kubeup_etcd_leader{member="master-0"} 1
kubeup_etcd_leader{member="master-1"} 0
kubeup_etcd_leader{member="master-2"} 0
# HELP kubeup_etcd_leader_changes_total Changes of the etcd leader between this agent's polls.
# TYPE kubeup_etcd_leader_changes_total counter
kubeup_etcd_leader_changes_total 0
# HELP kubeup_etcd_member_healthy 1 when the etcd member answered status and a linearizable read and has no alarm (polled every 30 s).
# TYPE kubeup_etcd_member_healthy gauge
kubeup_etcd_member_healthy{member="10.77.0.12:2379"} 0
kubeup_etcd_member_healthy{member="master-0"} 1
kubeup_etcd_member_healthy{member="master-1"} 0
# HELP kubeup_etcd_members Members in the etcd cluster's member list (learners included), as last listed.
# TYPE kubeup_etcd_members gauge
kubeup_etcd_members 3
# HELP kubeup_etcd_quorum 1 when the etcd cluster has a quorum: a member polled answered a linearizable read, which etcd does once a majority of its voting members confirmed the leader.
# TYPE kubeup_etcd_quorum gauge
kubeup_etcd_quorum 1
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	// One MemberList a poll, through the member that answered a read.
	if !slices.Equal(f.listed, []string{ep0}) {
		t.Errorf("listed through %q, want %q", f.listed, ep0)
	}
	// master-1's name comes from the member list, and the status
	// carries the IDs and the leader as etcdctl shows them.
	st := e.Status()
	if st[1].Member != "master-1" || st[1].ID != "91bc3c398fb3c146" || st[1].LeaderID != "8e9e05c52164694d" ||
		st[1].Leader != "master-0" || st[1].RaftTerm != 2 || st[2].ID != "" || st[2].Leader != "" {
		t.Errorf("status %+v", st)
	}
	data, err := json.Marshal(st[1])
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"member":"master-1","endpoint":"https://10.77.0.11:2379","reachable":true,"healthy":false,"hasLeader":true,"dbSizeBytes":2097152,"error":"alarm NOSPACE","id":"91bc3c398fb3c146","leaderID":"8e9e05c52164694d","leader":"master-0","raftTerm":2}`; string(data) != want {
		t.Errorf("JSON\n%s\nwant\n%s", data, want)
	}
	if l := logs.take(); strings.Contains(l, "leader changed") {
		t.Errorf("the first leader seen logged a change:\n%s", l)
	}

	leaderMetrics := func(leader0, leader1, leader2, changes, quorum int) string {
		return fmt.Sprintf(`
# HELP kubeup_etcd_leader 1 for the etcd leader as the members that answered see it, 0 for the other members.
# TYPE kubeup_etcd_leader gauge
kubeup_etcd_leader{member="master-0"} %d
kubeup_etcd_leader{member="master-1"} %d
kubeup_etcd_leader{member="master-2"} %d
# HELP kubeup_etcd_leader_changes_total Changes of the etcd leader between this agent's polls.
# TYPE kubeup_etcd_leader_changes_total counter
kubeup_etcd_leader_changes_total %d
# HELP kubeup_etcd_quorum 1 when the etcd cluster has a quorum: a member polled answered a linearizable read, which etcd does once a majority of its voting members confirmed the leader.
# TYPE kubeup_etcd_quorum gauge
kubeup_etcd_quorum %d
`, leader0, leader1, leader2, changes, quorum)
	}
	leaderNames := []string{"kubeup_etcd_leader", "kubeup_etcd_leader_changes_total", "kubeup_etcd_quorum"}

	// An election: master-1 leads in term 3. master-0 has not heard yet
	// and still names master-0: the newest term wins.
	f.set(map[string]EtcdMemberStatus{
		ep0: {Reachable: true, Healthy: true, HasLeader: true, id: id0, leaderID: id0, RaftTerm: 2, read: true},
		ep1: {Reachable: true, Healthy: true, HasLeader: true, id: id1, leaderID: id1, RaftTerm: 3, read: true},
	})
	e.poll(context.Background())
	if err := testutil.CollectAndCompare(e, strings.NewReader(leaderMetrics(0, 1, 0, 1, 1)), leaderNames...); err != nil {
		t.Error(err)
	}
	if l := logs.take(); !strings.Contains(l, `msg="etcd leader changed" old=master-0 new=master-1 term=3`) {
		t.Errorf("log of the leader change:\n%s", l)
	}
	// The same leader again is no change.
	e.poll(context.Background())
	if err := testutil.CollectAndCompare(e, strings.NewReader(leaderMetrics(0, 1, 0, 1, 1)), leaderNames...); err != nil {
		t.Error(err)
	}

	// Quorum lost: master-0 and master-2 are down, master-1 answers
	// status without a leader, and its read times out. master-0 keeps its
	// name, the member list is kept (listing needs a quorum, so it is not
	// tried), and no one leads.
	f.set(map[string]EtcdMemberStatus{
		ep0: {Error: "context deadline exceeded"},
		ep1: {Reachable: true, DBSize: 2 << 20, id: id1, RaftTerm: 4, Error: "read: context deadline exceeded"},
	})
	listed := len(f.listed)
	e.poll(context.Background())
	st = e.Status()
	if st[0].Member != "master-0" || st[0].Healthy || st[0].Error == "" {
		t.Errorf("status %+v", st[0])
	}
	if len(f.listed) != listed {
		t.Errorf("listed members without a quorum: %q", f.listed[listed:])
	}
	want = `
# HELP kubeup_etcd_has_leader 1 when every etcd member that answered knows a leader (and at least one answered).
# TYPE kubeup_etcd_has_leader gauge
kubeup_etcd_has_leader 0
# HELP kubeup_etcd_members Members in the etcd cluster's member list (learners included), as last listed.
# TYPE kubeup_etcd_members gauge
kubeup_etcd_members 3
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "kubeup_etcd_has_leader", "kubeup_etcd_members"); err != nil {
		t.Error(err)
	}
	if err := testutil.CollectAndCompare(e, strings.NewReader(leaderMetrics(0, 0, 0, 1, 0)), leaderNames...); err != nil {
		t.Error(err)
	}

	// Back with master-0 leading: a change from master-1, the last leader
	// seen, though the poll between saw none.
	f.set(map[string]EtcdMemberStatus{
		ep0: {Reachable: true, Healthy: true, HasLeader: true, id: id0, leaderID: id0, RaftTerm: 5, read: true},
		ep1: {Reachable: true, Healthy: true, HasLeader: true, id: id1, leaderID: id0, RaftTerm: 5, read: true},
	})
	e.poll(context.Background())
	if err := testutil.CollectAndCompare(e, strings.NewReader(leaderMetrics(1, 0, 0, 2, 1)), leaderNames...); err != nil {
		t.Error(err)
	}
	if l := logs.take(); !strings.Contains(l, `msg="etcd leader changed" old=master-1 new=master-0`) {
		t.Errorf("log of the leader change:\n%s", l)
	}
}

// Without a member list (none answered yet, or a checker alone), the
// leader is named by the endpoint that is it, and there is no member
// count to report.
func TestEtcdHealthWithoutMemberList(t *testing.T) {
	f := &fakeEtcd{res: map[string]EtcdMemberStatus{
		ep0: {Member: "master-0", Reachable: true, Healthy: true, HasLeader: true, id: id0, leaderID: id0, RaftTerm: 2, read: true},
	}}
	e := &etcdHealth{endpoints: []string{ep0}, check: f.check,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), names: map[string]string{}}
	e.poll(context.Background())
	want := `
# HELP kubeup_etcd_leader 1 for the etcd leader as the members that answered see it, 0 for the other members.
# TYPE kubeup_etcd_leader gauge
kubeup_etcd_leader{member="master-0"} 1
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "kubeup_etcd_leader", "kubeup_etcd_members"); err != nil {
		t.Error(err)
	}
	if st := e.Status(); st[0].Leader != "master-0" {
		t.Errorf("status %+v", st[0])
	}
}

// TestIntegrationEtcd checks the clientv3 checker against a real etcd with
// client-certificate TLS, as on a master, then with etcd stopped. It needs
// an etcd binary: $KUBEUP_ETCD, etcd on $PATH, or the one kubeup's artifact
// cache built (~/.cache/kubeup/artifacts/etcd/*/root/usr/local/bin/etcd).
func TestIntegrationEtcd(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (starts etcd): skipped under -short")
	}
	bin := findEtcd()
	if bin == "" {
		t.Skip("no etcd binary (set KUBEUP_ETCD, or run `kubeup artifacts`)")
	}
	dir := t.TempDir()
	ca := newTestCA(t, "etcd-ca")
	srvCert, srvKey := ca.issue(t, "etcd-server", nil, true, time.Now().Add(time.Hour))
	cliCert, cliKey := ca.issue(t, "kube-etcd-healthcheck-client", nil, false, time.Now().Add(time.Hour))
	cfg := agentconfig.Etcd{
		CAFile:   writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem),
		CertFile: writeFile(t, filepath.Join(dir, "hc.crt"), cliCert),
		KeyFile:  writeFile(t, filepath.Join(dir, "hc.key"), cliKey),
	}
	writeFile(t, filepath.Join(dir, "server.crt"), srvCert)
	writeFile(t, filepath.Join(dir, "server.key"), srvKey)
	client, peer := kubetest.FreePort(t), kubetest.FreePort(t)
	endpoint := fmt.Sprintf("https://127.0.0.1:%d", client)
	cmd := exec.Command(bin, "--name=master-0", "--data-dir="+filepath.Join(dir, "data"),
		"--listen-client-urls="+endpoint, "--advertise-client-urls="+endpoint,
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", peer),
		fmt.Sprintf("--initial-cluster=master-0=http://127.0.0.1:%d", peer),
		"--cert-file="+filepath.Join(dir, "server.crt"), "--key-file="+filepath.Join(dir, "server.key"),
		"--trusted-ca-file="+cfg.CAFile, "--client-cert-auth")
	logFile, _ := os.Create(filepath.Join(dir, "etcd.log"))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			cmd.Process.Kill()
			cmd.Wait()
			stopped = true
		}
	}
	defer stop()

	ec := newEtcdClients(cfg)
	defer ec.close()
	check := ec.check
	var st EtcdMemberStatus
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		st = check(ctx, endpoint)
		cancel()
		if st.Healthy || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if !st.Healthy || !st.HasLeader || st.id == 0 || st.leaderID != st.id || st.RaftTerm == 0 || !st.read || st.DBSize <= 0 {
		log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
		t.Fatalf("running etcd: %+v\n%s", st, log)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	members, err := ec.members(ctx, endpoint)
	cancel()
	if err != nil || len(members) != 1 || members[0] != (etcdMember{ID: st.id, Name: "master-0"}) {
		t.Errorf("member list: %+v, %v", members, err)
	}

	// A poll as the agent's: the member named, leading, with a quorum.
	h := &etcdHealth{endpoints: []string{endpoint}, check: ec.check, list: ec.members,
		log: slog.New(slog.NewTextHandler(io.Discard, nil)), names: map[string]string{}}
	h.poll(context.Background())
	if st := h.Status(); len(st) != 1 || st[0].Member != "master-0" || st[0].Leader != "master-0" || st[0].ID != hexID(members[0].ID) {
		t.Errorf("poll: %+v", st)
	}
	want := `
# HELP kubeup_etcd_leader 1 for the etcd leader as the members that answered see it, 0 for the other members.
# TYPE kubeup_etcd_leader gauge
kubeup_etcd_leader{member="master-0"} 1
# HELP kubeup_etcd_members Members in the etcd cluster's member list (learners included), as last listed.
# TYPE kubeup_etcd_members gauge
kubeup_etcd_members 1
# HELP kubeup_etcd_quorum 1 when the etcd cluster has a quorum: a member polled answered a linearizable read, which etcd does once a majority of its voting members confirmed the leader.
# TYPE kubeup_etcd_quorum gauge
kubeup_etcd_quorum 1
`
	if err := testutil.CollectAndCompare(h, strings.NewReader(want), "kubeup_etcd_leader", "kubeup_etcd_members", "kubeup_etcd_quorum"); err != nil {
		t.Error(err)
	}

	// The next poll reuses the connection.
	first := ec.clients[endpoint]
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	if st := check(ctx, endpoint); !st.Healthy || first == nil || ec.clients[endpoint] != first {
		t.Errorf("second poll: %+v, client %p then %p (want the same)", st, first, ec.clients[endpoint])
	}
	cancel()

	// A client certificate etcd does not trust: unhealthy, with the reason.
	other := newTestCA(t, "someone else")
	oc, ok := other.issue(t, "x", nil, false, time.Now().Add(time.Hour))
	bad := cfg
	bad.CertFile, bad.KeyFile = writeFile(t, filepath.Join(dir, "bad.crt"), oc), writeFile(t, filepath.Join(dir, "bad.key"), ok)
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	if st := clientv3Checker(bad)(ctx, endpoint); st.Healthy || st.Error == "" {
		t.Errorf("untrusted client certificate: %+v", st)
	}
	cancel()

	stop()
	start := time.Now()
	ctx, cancel = context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if st := check(ctx, endpoint); st.Healthy || st.Reachable || st.Error == "" {
		t.Errorf("stopped etcd: %+v", st)
	}
	if d := time.Since(start); d > 3*etcdCallTimeout {
		t.Errorf("check of a stopped etcd took %s", d)
	}
	if _, ok := ec.clients[endpoint]; ok {
		t.Error("the failed poll kept its client")
	}
}

func findEtcd() string {
	if p := os.Getenv("KUBEUP_ETCD"); p != "" {
		return p
	}
	if p, err := exec.LookPath("etcd"); err == nil {
		return p
	}
	home, _ := os.UserHomeDir()
	m, _ := filepath.Glob(filepath.Join(home, ".cache", "kubeup", "artifacts", "etcd", "*", "root", "usr", "local", "bin", "etcd"))
	if len(m) > 0 {
		return m[0]
	}
	return ""
}

// TestEtcdTLSReloadsClientCert: the etcd client's certificate is read at
// each handshake, so a certificate the agent renewed in place is the one a
// reconnect presents.
func TestEtcdTLSReloadsClientCert(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "etcd-ca")
	c1, k1 := ca.issue(t, "kube-etcd-healthcheck-client", nil, false, time.Now().Add(time.Hour))
	cfg := agentconfig.Etcd{
		CAFile:   writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem),
		CertFile: writeFile(t, filepath.Join(dir, "hc.crt"), c1),
		KeyFile:  writeFile(t, filepath.Join(dir, "hc.key"), k1),
	}
	tlsCfg, err := etcdTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	serial := func() string {
		t.Helper()
		cert, err := tlsCfg.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil {
			t.Fatal(err)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf.SerialNumber.String()
	}
	before := serial()
	c2, k2 := ca.issue(t, "kube-etcd-healthcheck-client", nil, false, time.Now().Add(2*time.Hour))
	writeFile(t, cfg.CertFile, c2)
	writeFile(t, cfg.KeyFile, k2)
	if after := serial(); after == before {
		t.Errorf("after the renewal the handshake still presents certificate %s", before)
	}
	// A key pair that does not load is an error at construction.
	writeFile(t, cfg.KeyFile, k1)
	if _, err := etcdTLS(cfg); err == nil {
		t.Error("etcdTLS accepted a certificate with another certificate's key")
	}
}
