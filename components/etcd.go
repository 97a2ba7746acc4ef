package components

import (
	"fmt"
	"strings"
	"time"

	"kubeup.dev/kubeup/systemd"
)

// Etcd is the cluster's key-value store: one member per master, peer and
// client TLS with client-certificate authentication on both.
type Etcd struct{}

// Etcd ports and paths.
const (
	EtcdClientPort  = 2379
	EtcdPeerPort    = 2380
	EtcdDataDir     = "/var/lib/etcd"
	EtcdMetricsAddr = "127.0.0.1:2381"
)

func (Etcd) Name() string        { return "etcd" }
func (Etcd) Description() string { return "etcd: the cluster's key-value store" }
func (Etcd) Roles() []Role       { return []Role{Master} }

func (e Etcd) Unit(role Role) systemd.Unit {
	s := systemd.Service{
		Documentation:   []string{"https://etcd.io/docs/v3.6/op-guide/configuration/"},
		Type:            "notify", // etcd signals READY=1 once it serves clients
		TimeoutStartSec: 5 * time.Minute,
		Limits:          map[string]string{"LimitNOFILE": "65536"},
	}
	controlPlaneHardening(&s, EtcdDataDir)
	inControlPlane(&s)
	return service(e, role, BinDir+"/etcd", s)
}

func (Etcd) ImageFiles() []File { return nil }

// EtcdMemberFor is a master's etcd member: etcd's flags and the agent's
// restore (`etcdutl snapshot restore` rebuilds the member's data directory
// with the same name, peer URL, initial cluster and token) both take it
// from here, so they cannot drift apart.
func EtcdMemberFor(ctx Context) AgentEtcdMember {
	m := ctx.Machine
	var initial []string
	for _, p := range ctx.Cluster.Masters {
		initial = append(initial, fmt.Sprintf("%s=https://%s:%d", p.Name, p.IP, EtcdPeerPort))
	}
	return AgentEtcdMember{
		Unit:                     Etcd{}.Name() + ".service",
		ClientURL:                fmt.Sprintf("https://127.0.0.1:%d", EtcdClientPort),
		Name:                     m.Name,
		DataDir:                  EtcdDataDir,
		InitialAdvertisePeerURLs: fmt.Sprintf("https://%s:%d", m.IP, EtcdPeerPort),
		InitialCluster:           strings.Join(initial, ","),
		InitialClusterToken:      ctx.Cluster.Name,
	}
}

func (Etcd) Flags(ctx Context) Flags {
	m := ctx.Machine
	member := EtcdMemberFor(ctx)
	state := "new"
	if m.EtcdJoin {
		state = "existing"
	}
	f := Flags{
		"name":                        member.Name,
		"data-dir":                    member.DataDir,
		"listen-client-urls":          fmt.Sprintf("%s,https://%s:%d", member.ClientURL, m.IP, EtcdClientPort),
		"advertise-client-urls":       fmt.Sprintf("https://%s:%d", m.IP, EtcdClientPort),
		"listen-peer-urls":            fmt.Sprintf("https://%s:%d", m.IP, EtcdPeerPort),
		"initial-advertise-peer-urls": member.InitialAdvertisePeerURLs,
		"initial-cluster":             member.InitialCluster,
		"initial-cluster-state":       state,
		"initial-cluster-token":       member.InitialClusterToken,
		"client-cert-auth":            "true",
		"trusted-ca-file":             pki("etcd/ca.crt"),
		"cert-file":                   pki("etcd/server.crt"),
		"key-file":                    pki("etcd/server.key"),
		"peer-client-cert-auth":       "true",
		"peer-trusted-ca-file":        pki("etcd/ca.crt"),
		"peer-cert-file":              pki("etcd/peer.crt"),
		"peer-key-file":               pki("etcd/peer.key"),
		"tls-min-version":             "TLS1.2",
		"cipher-suites":               strings.Join(TLSCipherSuites(), ","),
		"snapshot-count":              "10000",
		"auto-compaction-retention":   "1",
		"metrics":                     "basic",
		// Plain HTTP on loopback (kubeadm's choice), served onwards over TLS
		// by the agent: Prometheus needs no etcd client certificate, which
		// would let it read the whole datastore.
		"listen-metrics-urls": "http://" + EtcdMetricsAddr,
	}
	if len(ctx.Cluster.Masters) > 1 {
		f["heartbeat-interval"] = fmt.Sprint(etcdHeartbeat.Milliseconds())
		f["election-timeout"] = fmt.Sprint(etcdElection.Milliseconds())
	}
	return f
}

// etcd's Raft timings with several members. The defaults (100 ms, 1 s)
// assume round trips of milliseconds; between emulated (TCG) machines
// sharing two host cores a ping took 676 ms while three masters booted,
// and with the defaults the members kept electing and never served. etcd's
// tuning guide: the heartbeat near the round trip, the election timeout
// 10 times it. A lost leader is replaced in about 5 s. (One member has no
// peers to hear from: its defaults stay.)
const (
	etcdHeartbeat = 500 * time.Millisecond
	etcdElection  = 5 * time.Second
)

func (Etcd) Files(Context) ([]File, error) { return nil, nil }

func (Etcd) Health() Endpoint {
	return Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/health", EtcdClientPort), Auth: AuthClientCert}
}

// Metrics are on a loopback-only listener; the agent serves them onwards.
func (Etcd) Metrics() *Endpoint {
	return &Endpoint{URL: "http://" + EtcdMetricsAddr + "/metrics", Auth: AuthNone}
}

func (Etcd) Certificates(Role) []string {
	return []string{"etcd-ca", "etcd-server", "etcd-peer"}
}
