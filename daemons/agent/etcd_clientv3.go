//go:build !noetcd

package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"kubeup.dev/kubeup/components/agentconfig"
)

// newEtcdChecker: this build reports etcd member health (masters).
func newEtcdChecker(cfg agentconfig.Etcd) (etcdChecker, etcdLister, error) {
	c := newEtcdClients(cfg)
	return c.check, c.members, nil
}

// clientv3Checker checks an endpoint the way `etcdctl endpoint health` and
// `endpoint status` do: Status (member ID, leader, raft term, database
// size), a linearizable read of the key "health" (it needs a leader and a
// quorum; permission denied still proves that), and no alarm (NOSPACE,
// CORRUPT) raised for the member. The member's name comes from the poll's
// one MemberList (members).
//
// It keeps a client per endpoint between polls, as the API server keeps
// its etcd client: a poll is three RPCs an endpoint and one MemberList, on
// open connections. A client per poll cost, every 30 s, a TLS handshake
// (certificate parsing, ECDSA, chain verification) and gRPC's dial and
// teardown, on a master whose CPU is short, and kept those code paths in
// the agent's resident set. The client certificate is read from disk at
// every handshake (the agent renews it in place), and a poll that fails
// closes the client, so the next one starts over with the CA and
// certificates on disk now.
func clientv3Checker(cfg agentconfig.Etcd) etcdChecker { return newEtcdClients(cfg).check }

func newEtcdClients(cfg agentconfig.Etcd) *etcdClients {
	return &etcdClients{cfg: cfg, clients: map[string]*clientv3.Client{}}
}

// etcdClients holds clientv3Checker's clients.
type etcdClients struct {
	cfg     agentconfig.Etcd
	mu      sync.Mutex
	clients map[string]*clientv3.Client
}

// client returns endpoint's client, making it when there is none.
func (e *etcdClients) client(endpoint string) (*clientv3.Client, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if cli, ok := e.clients[endpoint]; ok {
		return cli, nil
	}
	tlsCfg, err := etcdTLS(e.cfg)
	if err != nil {
		return nil, err
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{endpoint},
		TLS:       tlsCfg,
		Logger:    zap.NewNop(), // its default logs JSON to stderr
	})
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	e.clients[endpoint] = cli
	return cli, nil
}

// drop closes endpoint's client after a failed poll.
func (e *etcdClients) drop(endpoint string) {
	e.mu.Lock()
	cli := e.clients[endpoint]
	delete(e.clients, endpoint)
	e.mu.Unlock()
	if cli != nil {
		cli.Close()
	}
}

// close closes every client.
func (e *etcdClients) close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for ep, cli := range e.clients {
		cli.Close()
		delete(e.clients, ep)
	}
}

func (e *etcdClients) check(ctx context.Context, endpoint string) EtcdMemberStatus {
	var st EtcdMemberStatus
	fail := func(err error) EtcdMemberStatus {
		e.drop(endpoint)
		st.Healthy, st.Error = false, err.Error()
		return st
	}
	cli, err := e.client(endpoint)
	if err != nil {
		return fail(err)
	}
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, etcdCallTimeout) }

	c, cancel := call()
	s, err := cli.Status(c, endpoint)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("status: %w", err))
	}
	st.Reachable, st.HasLeader, st.DBSize = true, s.Leader != 0, s.DbSize
	st.id, st.leaderID, st.RaftTerm = s.Header.GetMemberId(), s.Leader, s.RaftTerm
	id := st.id

	c, cancel = call()
	_, err = cli.Get(c, "health")
	cancel()
	if err != nil && !errors.Is(err, rpctypes.ErrPermissionDenied) {
		return fail(fmt.Errorf("read: %w", err))
	}
	st.read = true

	c, cancel = call()
	alarms, err := cli.AlarmList(c)
	cancel()
	if err != nil {
		return fail(fmt.Errorf("alarms: %w", err))
	}
	for _, a := range alarms.Alarms {
		if a.MemberID == id {
			// Not a client problem: the connection stays.
			st.Healthy, st.Error = false, fmt.Sprintf("alarm %s", a.Alarm)
			return st
		}
	}
	st.Healthy = true
	return st
}

// members is the cluster's member list through endpoint's client. It is
// linearizable, as etcdctl's: without a quorum it fails, and the caller
// keeps the list it had.
func (e *etcdClients) members(ctx context.Context, endpoint string) ([]etcdMember, error) {
	cli, err := e.client(endpoint)
	if err != nil {
		return nil, err
	}
	ml, err := cli.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("member list: %w", err)
	}
	out := make([]etcdMember, 0, len(ml.Members))
	for _, m := range ml.Members {
		out = append(out, etcdMember{ID: m.ID, Name: m.Name})
	}
	return out, nil
}

// etcdTLS is the client TLS configuration: the CA read now, the client
// certificate read at every handshake (it is renewed in place).
func etcdTLS(cfg agentconfig.Etcd) (*tls.Config, error) {
	ca, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("etcd CA %s: no certificate", cfg.CAFile)
	}
	load := func() (*tls.Certificate, error) {
		cert, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("etcd client certificate: %w", err)
		}
		return &cert, nil
	}
	if _, err := load(); err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return load() },
	}, nil
}

// newEtcdSnapshotFunc: this build streams snapshots with clientv3's
// Maintenance (SnapshotWithVersion; Snapshot is deprecated in client
// v3.7) from the local member: its client URL, or the first endpoint of a
// configuration without a member. A client per snapshot, closed with the
// stream.
func newEtcdSnapshotFunc(cfg agentconfig.Etcd) (SnapshotFunc, error) {
	endpoint := cfg.Endpoints[0]
	if cfg.Member != nil {
		endpoint = cfg.Member.ClientURL
	}
	return func(ctx context.Context) (io.ReadCloser, error) {
		tlsCfg, err := etcdTLS(cfg)
		if err != nil {
			return nil, err
		}
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{endpoint},
			TLS:         tlsCfg,
			DialTimeout: etcdCallTimeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			return nil, fmt.Errorf("etcd client: %w", err)
		}
		resp, err := cli.SnapshotWithVersion(ctx)
		if err != nil {
			cli.Close()
			return nil, fmt.Errorf("snapshot of %s: %w", endpoint, err)
		}
		return &clientStream{ReadCloser: resp.Snapshot, cli: cli}, nil
	}, nil
}

// clientStream closes its client with the stream.
type clientStream struct {
	io.ReadCloser
	cli *clientv3.Client
}

func (s *clientStream) Close() error {
	err := s.ReadCloser.Close()
	s.cli.Close()
	return err
}
