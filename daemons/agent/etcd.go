package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/url"
	"strconv"
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
	// ID is the member's ID and LeaderID its leader's, in hex as etcdctl
	// shows them, Leader the leader's name: empty until the member
	// answers, and LeaderID and Leader while it knows no leader.
	ID       string `json:"id,omitempty"`
	LeaderID string `json:"leaderID,omitempty"`
	Leader   string `json:"leader,omitempty"`
	RaftTerm uint64 `json:"raftTerm,omitempty"`

	// From the checker: the IDs, and whether the linearizable read
	// answered (etcd answers one only with a quorum).
	id, leaderID uint64
	read         bool
}

// etcdChecker polls one endpoint.
type etcdChecker func(ctx context.Context, endpoint string) EtcdMemberStatus

// etcdMember is what the metrics keep of a member list entry.
type etcdMember struct {
	ID   uint64
	Name string // empty for a member added but never started
}

// etcdLister lists the cluster's members through one endpoint.
type etcdLister func(ctx context.Context, endpoint string) ([]etcdMember, error)

// etcdHealth is the task (on masters) that polls the configured etcd
// endpoints every 30 s for kubeup_etcd_* metrics. A failing etcd is a
// metric and a log line, never a task failure: the agent's health is its
// own, and etcd is what the metrics are for.
type etcdHealth struct {
	endpoints []string
	check     etcdChecker
	list      etcdLister // nil: names come from the checker alone
	log       *slog.Logger

	mu      sync.Mutex
	members []EtcdMemberStatus
	names   map[string]string // endpoint -> member name, once known
	// cluster is the member list last answered: it is kept through polls
	// that cannot list (no quorum), as membership rarely changes.
	cluster    []etcdMember
	leader     uint64 // as the last poll saw it; 0: none
	leaderName string
	quorum     bool
	lastLeader uint64 // the last leader seen, for leader changes
	changes    uint64
}

func newEtcdHealth(cfg *agentconfig.Etcd, log *slog.Logger) (*etcdHealth, error) {
	check, list, err := newEtcdChecker(*cfg)
	if err != nil {
		return nil, err
	}
	return &etcdHealth{endpoints: cfg.Endpoints, check: check, list: list, log: log, names: map[string]string{}}, nil
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
	via := "" // the endpoint to list members through
	for i, ep := range e.endpoints {
		cctx, cancel := context.WithTimeout(ctx, 3*etcdCallTimeout)
		st := e.check(cctx, ep)
		cancel()
		if ctx.Err() != nil {
			return
		}
		st.Endpoint = ep
		out[i] = st
		// MemberList is linearizable: only a member that just answered a
		// linearizable read would answer it rather than time out.
		if via == "" && (st.Healthy || st.read) {
			via = ep
		}
	}
	var list []etcdMember
	if via != "" && e.list != nil {
		cctx, cancel := context.WithTimeout(ctx, etcdCallTimeout)
		l, err := e.list(cctx, via)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			e.log.Debug("etcd member list", "endpoint", via, "err", err)
		} else {
			list = l
		}
	}

	e.mu.Lock()
	if list != nil {
		e.cluster = list
	}
	var leader, term uint64
	quorum := false
	for i := range out {
		st := &out[i]
		if name := e.listedName(st.id); name != "" {
			st.Member = name
		}
		if st.Member != "" {
			e.names[st.Endpoint] = st.Member
		} else if name, ok := e.names[st.Endpoint]; ok {
			st.Member = name
		} else {
			st.Member = endpointHost(st.Endpoint)
		}
		if st.id != 0 {
			st.ID = hexID(st.id)
		}
		// Members may disagree while an election settles, or one is cut
		// off: the newest term's leader is the leader, as in raft.
		if st.Reachable && st.leaderID != 0 && (leader == 0 || st.RaftTerm > term) {
			leader, term = st.leaderID, st.RaftTerm
		}
		// A linearizable read is answered only once a majority of the
		// voting members confirmed the leader: each master's agent polls
		// its own member alone, so this, not a count of the members it
		// polled, is what tells it the cluster has a quorum.
		quorum = quorum || st.Healthy || st.read
	}
	for i := range out {
		if st := &out[i]; st.leaderID != 0 {
			st.LeaderID, st.Leader = hexID(st.leaderID), e.memberName(out, st.leaderID)
		}
	}
	prevLeader := e.lastLeader
	changed := leader != 0 && prevLeader != 0 && leader != prevLeader
	if changed {
		e.changes++
	}
	if leader != 0 {
		e.lastLeader = leader
	}
	leaderName, prevName := e.memberName(out, leader), e.memberName(out, prevLeader)
	e.leader, e.leaderName, e.quorum = leader, leaderName, quorum
	prev := e.members
	e.members = out
	e.mu.Unlock()

	if changed {
		e.log.Info("etcd leader changed", "old", prevName, "new", leaderName, "term", term)
	}
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

// listedName is id's name in the member list; empty when unknown. Call
// with e.mu held.
func (e *etcdHealth) listedName(id uint64) string {
	for _, m := range e.cluster {
		if id != 0 && m.ID == id {
			return m.Name
		}
	}
	return ""
}

// memberName is id's name: from the member list, else from an endpoint
// polled, else the ID in hex. Call with e.mu held.
func (e *etcdHealth) memberName(polled []EtcdMemberStatus, id uint64) string {
	if id == 0 {
		return ""
	}
	if name := e.listedName(id); name != "" {
		return name
	}
	for _, st := range polled {
		if st.id == id {
			return st.Member
		}
	}
	return hexID(id)
}

func hexID(id uint64) string { return strconv.FormatUint(id, 16) }

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
	etcdMembersDesc = prometheus.NewDesc("kubeup_etcd_members",
		"Members in the etcd cluster's member list (learners included), as last listed.", nil, nil)
	etcdQuorumDesc = prometheus.NewDesc("kubeup_etcd_quorum",
		"1 when the etcd cluster has a quorum: a member polled answered a linearizable read, which etcd does once a majority of its voting members confirmed the leader.",
		nil, nil)
	etcdLeaderDesc = prometheus.NewDesc("kubeup_etcd_leader",
		"1 for the etcd leader as the members that answered see it, 0 for the other members.", []string{"member"}, nil)
	etcdLeaderChangesDesc = prometheus.NewDesc("kubeup_etcd_leader_changes_total",
		"Changes of the etcd leader between this agent's polls.", nil, nil)
)

func (e *etcdHealth) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{etcdHealthyDesc, etcdHasLeaderDesc, etcdDBSizeDesc,
		etcdMembersDesc, etcdQuorumDesc, etcdLeaderDesc, etcdLeaderChangesDesc} {
		ch <- d
	}
}

func (e *etcdHealth) Collect(ch chan<- prometheus.Metric) {
	e.mu.Lock()
	members, cluster := e.members, e.cluster
	leader, leaderName, quorum, changes := e.leader, e.leaderName, e.quorum, e.changes
	e.mu.Unlock() // both slices are replaced by polls, never changed
	if len(members) == 0 {
		return // not polled yet
	}
	answered, hasLeader := 0, true
	for _, m := range members {
		ch <- prometheus.MustNewConstMetric(etcdHealthyDesc, prometheus.GaugeValue, boolValue(m.Healthy), m.Member)
		if m.DBSize > 0 {
			ch <- prometheus.MustNewConstMetric(etcdDBSizeDesc, prometheus.GaugeValue, float64(m.DBSize), m.Member)
		}
		if m.Reachable {
			answered++
			hasLeader = hasLeader && m.HasLeader
		}
	}
	ch <- prometheus.MustNewConstMetric(etcdHasLeaderDesc, prometheus.GaugeValue, boolValue(answered > 0 && hasLeader))
	if len(cluster) > 0 {
		ch <- prometheus.MustNewConstMetric(etcdMembersDesc, prometheus.GaugeValue, float64(len(cluster)))
	}
	ch <- prometheus.MustNewConstMetric(etcdQuorumDesc, prometheus.GaugeValue, boolValue(quorum))
	listed := false
	for _, m := range cluster {
		name := m.Name
		if name == "" {
			name = hexID(m.ID)
		}
		listed = listed || m.ID == leader
		ch <- prometheus.MustNewConstMetric(etcdLeaderDesc, prometheus.GaugeValue, boolValue(m.ID == leader), name)
	}
	if leader != 0 && !listed {
		ch <- prometheus.MustNewConstMetric(etcdLeaderDesc, prometheus.GaugeValue, 1, leaderName)
	}
	ch <- prometheus.MustNewConstMetric(etcdLeaderChangesDesc, prometheus.CounterValue, float64(changes))
}
