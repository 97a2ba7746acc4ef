//go:build !noetcd

package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/test/kubetest"
)

type fakeEtcd struct {
	mu  sync.Mutex
	res map[string]EtcdMemberStatus
}

func (f *fakeEtcd) check(_ context.Context, ep string) EtcdMemberStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.res[ep]
}

func TestEtcdHealthMetrics(t *testing.T) {
	f := &fakeEtcd{res: map[string]EtcdMemberStatus{
		"https://10.77.0.10:2379": {Member: "master-0", Reachable: true, Healthy: true, HasLeader: true, DBSize: 4 << 20},
		"https://10.77.0.11:2379": {Member: "master-1", Reachable: true, Healthy: false, HasLeader: true, DBSize: 2 << 20, Error: "alarm NOSPACE"},
	}}
	e := &etcdHealth{endpoints: []string{"https://10.77.0.10:2379", "https://10.77.0.11:2379", "https://10.77.0.12:2379"},
		check: f.check, log: slog.New(slog.NewTextHandler(io.Discard, nil)), names: map[string]string{}}
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
# HELP kubeup_etcd_member_healthy 1 when the etcd member answered status and a linearizable read and has no alarm (polled every 30 s).
# TYPE kubeup_etcd_member_healthy gauge
kubeup_etcd_member_healthy{member="10.77.0.12:2379"} 0
kubeup_etcd_member_healthy{member="master-0"} 1
kubeup_etcd_member_healthy{member="master-1"} 0
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want)); err != nil {
		t.Error(err)
	}

	// master-0 goes down: it keeps its name, and the cluster has no
	// leader as far as anyone who answers knows.
	f.mu.Lock()
	f.res["https://10.77.0.10:2379"] = EtcdMemberStatus{Error: "context deadline exceeded"}
	f.res["https://10.77.0.11:2379"] = EtcdMemberStatus{Member: "master-1", Reachable: true, DBSize: 2 << 20}
	f.mu.Unlock()
	e.poll(context.Background())
	st := e.Status()
	if st[0].Member != "master-0" || st[0].Healthy || st[0].Error == "" {
		t.Errorf("status %+v", st[0])
	}
	want = `
# HELP kubeup_etcd_has_leader 1 when every etcd member that answered knows a leader (and at least one answered).
# TYPE kubeup_etcd_has_leader gauge
kubeup_etcd_has_leader 0
`
	if err := testutil.CollectAndCompare(e, strings.NewReader(want), "kubeup_etcd_has_leader"); err != nil {
		t.Error(err)
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
	if !st.Healthy || !st.HasLeader || st.Member != "master-0" || st.DBSize <= 0 {
		log, _ := os.ReadFile(filepath.Join(dir, "etcd.log"))
		t.Fatalf("running etcd: %+v\n%s", st, log)
	}

	// The next poll reuses the connection.
	first := ec.clients[endpoint]
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
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
