package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"kubeup.dev/kubeup/components/agentconfig"
)

// etcd health timing: a poll every 30 s, each call bounded.
const (
	etcdPollInterval = 30 * time.Second
	etcdCallTimeout  = 5 * time.Second
)

// EtcdMemberStatus is one etcd endpoint as last polled.
type EtcdMemberStatus struct {
	// Member is the member's name; the endpoint's host until etcd has
	// answered once.
	Member   string `json:"member"`
	Endpoint string `json:"endpoint"`
	// Reachable: the member answered a status request.
	Reachable bool   `json:"reachable"`
	Healthy   bool   `json:"healthy"`
	HasLeader bool   `json:"hasLeader"`
	DBSize    int64  `json:"dbSizeBytes,omitempty"`
	Error     string `json:"error,omitempty"`
}

// etcdChecker polls one endpoint.
type etcdChecker func(ctx context.Context, endpoint string) EtcdMemberStatus

// etcdHealth is the task (on masters) that polls the configured etcd
// endpoints every 30 s for kubeup_etcd_* metrics. A failing etcd is a
// metric and a log line, never a task failure: the agent's health is its
// own, and etcd is what the metrics are for.
type etcdHealth struct {
	endpoints []string
	check     etcdChecker
	log       *slog.Logger

	mu      sync.Mutex
	members []EtcdMemberStatus
	names   map[string]string // endpoint -> member name, once known
}

func newEtcdHealth(cfg *agentconfig.Etcd, log *slog.Logger) (*etcdHealth, error) {
	check, err := newEtcdChecker(*cfg)
	if err != nil {
		return nil, err
	}
	return &etcdHealth{endpoints: cfg.Endpoints, check: check, log: log, names: map[string]string{}}, nil
}

// errNoEtcdClient: a configuration with etcd given to a build without the
// etcd client (-tags noetcd, the node image's agent).
var errNoEtcdClient = errors.New("config etcd: this kubeup-agent is the node build (-tags noetcd), without an etcd client; masters carry the full build")

func (e *etcdHealth) Name() string { return "etcd-health" }

func (e *etcdHealth) Run(ctx context.Context) error {
	for {
		e.poll(ctx)
		if sleepCtx(ctx, etcdPollInterval) != nil {
			return nil
		}
	}
}

func (e *etcdHealth) poll(ctx context.Context) {
	out := make([]EtcdMemberStatus, len(e.endpoints))
	for i, ep := range e.endpoints {
		cctx, cancel := context.WithTimeout(ctx, 3*etcdCallTimeout)
		st := e.check(cctx, ep)
		cancel()
		if ctx.Err() != nil {
			return
		}
		st.Endpoint = ep
		e.mu.Lock()
		if st.Member != "" {
			e.names[ep] = st.Member
		} else if name, ok := e.names[ep]; ok {
			st.Member = name
		} else {
			st.Member = endpointHost(ep)
		}
		e.mu.Unlock()
		out[i] = st
	}
	e.mu.Lock()
	prev := e.members
	e.members = out
	e.mu.Unlock()
	for i, st := range out {
		was := i < len(prev) && prev[i].Healthy
		switch {
		case st.Healthy && !was && prev != nil:
			e.log.Info("etcd member healthy", "member", st.Member, "endpoint", st.Endpoint)
		case !st.Healthy && (was || prev == nil):
			e.log.Warn("etcd member unhealthy", "member", st.Member, "endpoint", st.Endpoint, "err", st.Error)
		}
	}
}

// Status returns the last poll's results.
func (e *etcdHealth) Status() []EtcdMemberStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]EtcdMemberStatus(nil), e.members...)
}

func endpointHost(ep string) string {
	if u, err := url.Parse(ep); err == nil && u.Host != "" {
		return u.Host
	}
	return ep
}

var (
	etcdHealthyDesc = prometheus.NewDesc("kubeup_etcd_member_healthy",
		"1 when the etcd member answered status and a linearizable read and has no alarm (polled every 30 s).",
		[]string{"member"}, nil)
	etcdHasLeaderDesc = prometheus.NewDesc("kubeup_etcd_has_leader",
		"1 when every etcd member that answered knows a leader (and at least one answered).", nil, nil)
	etcdDBSizeDesc = prometheus.NewDesc("kubeup_etcd_db_size_bytes",
		"Size of the etcd member's database file.", []string{"member"}, nil)
)

func (e *etcdHealth) Describe(ch chan<- *prometheus.Desc) {
	ch <- etcdHealthyDesc
	ch <- etcdHasLeaderDesc
	ch <- etcdDBSizeDesc
}

func (e *etcdHealth) Collect(ch chan<- prometheus.Metric) {
	members := e.Status()
	if len(members) == 0 {
		return // not polled yet
	}
	answered, leader := 0, true
	for _, m := range members {
		ch <- prometheus.MustNewConstMetric(etcdHealthyDesc, prometheus.GaugeValue, boolValue(m.Healthy), m.Member)
		if m.DBSize > 0 {
			ch <- prometheus.MustNewConstMetric(etcdDBSizeDesc, prometheus.GaugeValue, float64(m.DBSize), m.Member)
		}
		if m.Reachable {
			answered++
			leader = leader && m.HasLeader
		}
	}
	ch <- prometheus.MustNewConstMetric(etcdHasLeaderDesc, prometheus.GaugeValue, boolValue(answered > 0 && leader))
}
