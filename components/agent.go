package components

import (
	"fmt"
	"time"

	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/systemd"
)

// Agent is kubeup's node agent on every machine: it forwards the journal of
// every kubeup unit to the cluster's log aggregator, serves metrics about the
// machine's units and certificates, programs routes between machines' pod
// networks, and answers kubeup's status and journal queries.
type Agent struct{}

// Agent paths and port.
const (
	AgentBinary = BinDir + "/kubeup-agent"
	// ProbeBinary is the readiness probe units run (every image).
	ProbeBinary = BinDir + "/kubeup-probe"
	// AddonsBinary runs the addon manager on masters (and the UI, from its
	// own container image); nodes do not carry it.
	AddonsBinary    = BinDir + "/kubeup-addons"
	AgentConfigPath = agentconfig.Path
	AgentStateDir   = "/var/lib/kubeup-agent"
	AgentPort       = 10290
	// AgentLogBufferBytes bounds the on-disk buffer used while the log
	// aggregator is unreachable; past it the oldest entries are dropped
	// (and counted).
	AgentLogBufferBytes = 256 << 20
	// AgentLogIdentifier is the SYSLOG_IDENTIFIER whose journal lines are
	// forwarded whatever their unit (`systemd-cat -t kubeup`).
	AgentLogIdentifier = agentconfig.LogIdentifier
	// agentWatchdog is systemd's own daemons' value (journald, logind,
	// udevd: WatchdogSec=3min). 30 s killed healthy agents on a loaded
	// master under TCG (load average 34 on 2 vCPUs: make e2e saw the
	// master's agent killed by its watchdog 6 times, each kill a restart
	// that replays the log buffer and re-lists everything); a wedged
	// agent is still restarted within 3 minutes.
	agentWatchdog = 3 * time.Minute
)

// The agent's configuration file, defined in the leaf package the agent
// links (see agentconfig).
type (
	AgentConfig = agentconfig.Config
	AgentLogs   = agentconfig.Logs
	AgentNet    = agentconfig.Net
	AgentEtcd   = agentconfig.Etcd
	// AgentEtcdMember is a master's etcd member (see EtcdMemberFor).
	AgentEtcdMember = agentconfig.EtcdMember
	// AgentEtcdSnapshots configures the scheduled snapshots.
	AgentEtcdSnapshots = agentconfig.EtcdSnapshots
)

func (Agent) Name() string        { return "kubeup-agent" }
func (Agent) Description() string { return "kubeup node agent" }
func (Agent) Roles() []Role       { return []Role{Master, Node} }

// Unit: the agent sends READY=1 and pings the watchdog from its main loop.
func (a Agent) Unit(role Role) systemd.Unit {
	return service(a, role, AgentBinary+" agent", systemd.Service{
		Type:        "notify",
		WatchdogSec: agentWatchdog,
		Limits:      map[string]string{"MemoryMax": "128M"},
		// The images boot with transparent huge pages "madvise"; on a
		// kernel left at "always" every heap region the agent touches
		// would be backed by a 2 MiB page, about 10 MB of RSS over its
		// few MB of live heap.
		Environment: map[string]string{"GODEBUG": "disablethp=1"},
	})
}

func (Agent) ImageFiles() []File { return nil }

func (Agent) Flags(Context) Flags { return Flags{"config": AgentConfigPath} }

// AgentConfigFor builds a machine's agent configuration.
func AgentConfigFor(ctx Context) AgentConfig {
	c, m := ctx.Cluster, ctx.Machine
	cfg := AgentConfig{
		APIVersion: "kubeup.dev/v1alpha1", Kind: "AgentConfig",
		Cluster: c.Name, Machine: m.Name, Role: string(m.Role), MachineIP: m.IP.String(),
		Listen:          fmt.Sprintf(":%d", AgentPort),
		CertFile:        pki("kubeup-agent.crt"),
		KeyFile:         pki("kubeup-agent.key"),
		ClientCAFile:    pki("ca.crt"),
		Kubeconfig:      AgentKubeconfig,
		StaticPodDir:    StaticPodDir,
		CertificateDirs: []string{PKIDir, KubeletCertDir},
		Logs: AgentLogs{
			Forward:        c.LogForward,
			BufferDir:      AgentStateDir + "/buffer",
			BufferMaxBytes: AgentLogBufferBytes,
			StateDir:       AgentStateDir + "/logs",
			Identifiers:    []string{AgentLogIdentifier},
		},
		Network: AgentNet{ClusterPodCIDR: c.PodCIDR.String(), CNIConfDir: CNIConfDir},
		Scrape: map[string]string{
			"containerd": "http://" + ContainerdMetricsAddr + "/v1/metrics",
			"kube-proxy": "http://" + KubeProxyMetricsAddr + "/metrics",
		},
	}
	for _, comp := range ForRole(m.Role) {
		cfg.Units = append(cfg.Units, ActiveUnit(comp))
	}
	if m.Role == Master {
		cfg.Scrape["etcd"] = "http://" + EtcdMetricsAddr + "/metrics"
		member := EtcdMemberFor(ctx)
		cfg.Etcd = &AgentEtcd{
			Endpoints: []string{member.ClientURL},
			CAFile:    pki("etcd/ca.crt"),
			CertFile:  pki("etcd/healthcheck-client.crt"),
			KeyFile:   pki("etcd/healthcheck-client.key"),
			Member:    &member,
			Snapshots: &AgentEtcdSnapshots{
				Dir:      EtcdSnapshotDir,
				Interval: c.EtcdSnapshots.Interval.String(),
				Keep:     c.EtcdSnapshots.Keep,
			},
		}
	}
	return cfg
}

// AgentGroup is the group of the agents' shared client certificate; the
// addon manager binds it to AgentClusterRole.
const (
	AgentGroup       = "kubeup:agents"
	AgentClusterRole = "kubeup:agent"
)

func (Agent) Files(ctx Context) ([]File, error) {
	data, err := yaml.Marshal(AgentConfigFor(ctx))
	if err != nil {
		return nil, fmt.Errorf("kubeup-agent config: %w", err)
	}
	server := ctx.Cluster.APIServerEndpoint
	if ctx.Machine.Role == Master {
		server = localAPIServer()
	}
	kc, err := certKubeconfig(ctx.Cluster.Name, server, "kubeup-agent", pki("kubeup-agent.crt"), pki("kubeup-agent.key"))
	if err != nil {
		return nil, err
	}
	return []File{
		{Path: AgentConfigPath, Mode: 0o644, Content: data},
		{Path: AgentKubeconfig, Mode: 0o600, Content: kc},
	}, nil
}

func (Agent) Health() Endpoint {
	return Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/healthz", AgentPort), Auth: AuthNone}
}

// Metrics take a bearer token (checked with a TokenReview and a
// SubjectAccessReview, like the Kubernetes components) or a client
// certificate from the cluster CA.
func (Agent) Metrics() *Endpoint {
	return &Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/metrics", AgentPort), Auth: AuthBearer}
}

func (Agent) Certificates(r Role) []string {
	if r == Master {
		return []string{"kubernetes-ca", "kubeup-agent", "etcd-ca", "etcd-healthcheck-client"}
	}
	return []string{"kubernetes-ca", "kubeup-agent"}
}
