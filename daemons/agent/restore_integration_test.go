//go:build !noetcd

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
	"kubeup.dev/kubeup/test/kubetest"
)

// findEtcdutl finds etcdutl and an etcd of the same build: $KUBEUP_ETCDUTL
// (etcd beside it), or the etcd artifact kubeup's build caches (the
// multi-call binary with its etcdutl link).
func findEtcdutl() (etcdutl, etcd string) {
	if p := os.Getenv("KUBEUP_ETCDUTL"); p != "" {
		return p, filepath.Join(filepath.Dir(p), "etcd")
	}
	home, _ := os.UserHomeDir()
	m, _ := filepath.Glob(filepath.Join(home, ".cache", "kubeup", "artifacts", "etcd", "*", "root", "usr", "local", "bin", "etcdutl"))
	if len(m) == 0 {
		return "", ""
	}
	return m[0], filepath.Join(filepath.Dir(m[0]), "etcd")
}

// realEtcd is one etcd process over a data directory, with client TLS as
// on a master; stop and start are what systemd does to etcd.service.
type realEtcd struct {
	t                   *testing.T
	bin, dataDir, dir   string
	member              agentconfig.EtcdMember
	peerURL, clientURL  string
	etcdCfg             agentconfig.Etcd
	mu                  sync.Mutex
	cmd                 *exec.Cmd
	stops, starts, logs int
}

func (e *realEtcd) StartUnit(ctx context.Context, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd != nil {
		return nil
	}
	e.starts++
	e.logs++
	log, err := os.Create(filepath.Join(e.dir, fmt.Sprintf("etcd-%d.log", e.logs)))
	if err != nil {
		return err
	}
	cmd := exec.Command(e.bin, "--name="+e.member.Name, "--data-dir="+e.dataDir,
		"--listen-client-urls="+e.clientURL, "--advertise-client-urls="+e.clientURL,
		"--listen-peer-urls="+e.peerURL, "--initial-advertise-peer-urls="+e.peerURL,
		"--initial-cluster="+e.member.InitialCluster, "--initial-cluster-token="+e.member.InitialClusterToken,
		"--initial-cluster-state=new",
		"--cert-file="+filepath.Join(e.dir, "server.crt"), "--key-file="+filepath.Join(e.dir, "server.key"),
		"--trusted-ca-file="+e.etcdCfg.CAFile, "--client-cert-auth",
		fmt.Sprintf("--listen-metrics-urls=http://127.0.0.1:%d", kubetest.FreePort(e.t)))
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		return err
	}
	e.cmd = cmd
	// Like Type=notify: the start is done once etcd serves.
	deadline := time.Now().Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ec := newEtcdClients(e.etcdCfg)
		st := ec.check(cctx, e.clientURL)
		ec.close()
		cancel()
		if st.Healthy {
			return nil
		}
		if time.Now().After(deadline) {
			out, _ := os.ReadFile(log.Name())
			return fmt.Errorf("etcd did not become healthy: %s\n%s", st.Error, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *realEtcd) StopUnit(context.Context, string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.cmd == nil {
		return nil
	}
	e.stops++
	e.cmd.Process.Signal(os.Interrupt)
	e.cmd.Wait()
	e.cmd = nil
	return nil
}

func (e *realEtcd) RestartUnit(ctx context.Context, n string) error {
	e.StopUnit(ctx, n)
	return e.StartUnit(ctx, n)
}

func (e *realEtcd) client(t *testing.T) *clientv3.Client {
	t.Helper()
	tlsCfg, err := etcdTLS(e.etcdCfg)
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{e.clientURL}, TLS: tlsCfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestIntegrationEtcdSnapshotRestore is the restore drill on one machine
// with the real thing: a TLS etcd with objects, a scheduled snapshot taken
// through the agent's clientv3 code, a "namespace" deleted, then the
// agent's restore with the real etcdutl from kubeup's etcd artifact (only
// systemd is played by the test, which stops and starts the etcd process)
// into the same data directory, and every object read back from the
// restarted etcd, at a revision a billion ahead.
func TestIntegrationEtcdSnapshotRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (runs etcd and etcdutl): skipped under -short")
	}
	etcdutl, etcdBin := findEtcdutl()
	if etcdutl == "" {
		t.Skip("no etcdutl: build the etcd artifact (make build && bin/kubeup artifacts --only etcd), or set KUBEUP_ETCDUTL to an etcdutl with etcd beside it")
	}
	dir := t.TempDir()
	ca := newTestCA(t, "etcd-ca")
	srvCert, srvKey := ca.issue(t, "etcd-server", nil, true, time.Now().Add(time.Hour))
	cliCert, cliKey := ca.issue(t, "kube-etcd-healthcheck-client", nil, false, time.Now().Add(time.Hour))
	writeFile(t, filepath.Join(dir, "server.crt"), srvCert)
	writeFile(t, filepath.Join(dir, "server.key"), srvKey)
	peer := fmt.Sprintf("http://127.0.0.1:%d", kubetest.FreePort(t))
	client := fmt.Sprintf("https://127.0.0.1:%d", kubetest.FreePort(t))
	member := agentconfig.EtcdMember{Unit: "etcd.service", ClientURL: client, Name: "master-0",
		DataDir: filepath.Join(dir, "etcd"), InitialAdvertisePeerURLs: peer,
		InitialCluster: "master-0=" + peer, InitialClusterToken: "drill"}
	snapshots := agentconfig.EtcdSnapshots{Dir: filepath.Join(dir, "etcd-snapshots"), Interval: "1h", Keep: 3}
	etcdCfg := agentconfig.Etcd{Endpoints: []string{client},
		CAFile:   writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem),
		CertFile: writeFile(t, filepath.Join(dir, "hc.crt"), cliCert),
		KeyFile:  writeFile(t, filepath.Join(dir, "hc.key"), cliKey),
		Member:   &member, Snapshots: &snapshots}
	e := &realEtcd{t: t, bin: etcdBin, dataDir: member.DataDir, dir: dir, member: member, peerURL: peer, clientURL: client, etcdCfg: etcdCfg}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if err := e.StartUnit(ctx, "etcd.service"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.StopUnit(context.Background(), "") })

	// Objects in two "namespaces".
	cli := e.client(t)
	var keys []string
	for _, ns := range []string{"drill", "other"} {
		for i := range 50 {
			k := fmt.Sprintf("/registry/configmaps/%s/cm-%02d", ns, i)
			if _, err := cli.Put(ctx, k, strings.Repeat("v", i+1)); err != nil {
				t.Fatal(err)
			}
			keys = append(keys, k)
		}
	}

	// The scheduled snapshot, through the agent's own code.
	fetch, err := newEtcdSnapshotFunc(etcdCfg)
	if err != nil {
		t.Fatal(err)
	}
	s := &ScheduledSnapshot{Config: snapshots, Fetch: fetch, Now: time.Now, Log: slog.New(slog.DiscardHandler)}
	if err := s.Run(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ := etcdsnapshot.ReadStatus(snapshots.Dir)
	snapPath := filepath.Join(snapshots.Dir, st.LastFile)
	info, err := etcdsnapshot.Verify(snapPath)
	if err != nil || st.LastSize != info.Size {
		t.Fatalf("scheduled snapshot %+v: %v", st, err)
	}

	// The "namespace" is deleted after the snapshot.
	del, err := cli.Delete(ctx, "/registry/configmaps/drill/", clientv3.WithPrefix())
	if err != nil || del.Deleted != 50 {
		t.Fatalf("delete: %v %+v", err, del)
	}
	before := del.Header.Revision
	cli.Close()

	// The restore, as POST /v1/etcd/restore runs it.
	f, err := os.Open(snapPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := &etcdRestore{machine: "master-0", member: member, dir: snapshots.Dir, etcdutl: etcdutl,
		units: e, run: execCommand, now: time.Now, log: slog.New(slog.DiscardHandler)}
	res, err := r.Run(ctx, f)
	if err != nil {
		t.Fatalf("restore: %v\n%+v", err, res)
	}
	if e.stops != 1 || e.starts != 2 || res.PreviousDataDir != member.DataDir+".before-restore" {
		t.Errorf("stops %d, starts %d, result %+v", e.stops, e.starts, res)
	}
	if _, err := os.Stat(filepath.Join(res.PreviousDataDir, "member", "snap", "db")); err != nil {
		t.Errorf("the old data directory was not kept: %v", err)
	}

	cli = e.client(t)
	got, err := cli.Get(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	var back []string
	for _, kv := range got.Kvs {
		back = append(back, string(kv.Key))
	}
	if !slices.Equal(back, keys) {
		t.Errorf("after the restore %d keys, want %d: %v", len(back), len(keys), back)
	}
	// The bump is added to the snapshot's revision, which is the delete's
	// less one (the delete was the only write after the snapshot); it must
	// carry the revision far past every one a client has seen.
	if snapRev := before - 1; got.Header.Revision < snapRev+RestoreRevisionBump || got.Header.Revision <= before {
		t.Errorf("revision %d after the restore, want at least the snapshot's %d + %d", got.Header.Revision, snapRev, RestoreRevisionBump)
	}
	// Old revisions are compacted: a watcher from before gets told so.
	w := cli.Watch(ctx, "/registry/", clientv3.WithPrefix(), clientv3.WithRev(before))
	select {
	case resp := <-w:
		if resp.CompactRevision == 0 {
			t.Errorf("a watch from revision %d was not told it is compacted: %+v", before, resp)
		}
	case <-ctx.Done():
		t.Error("no answer to a watch from before the restore")
	}
}
