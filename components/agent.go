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
	agentWatchdog      = 30 * time.Second
)

// The agent's configuration file, defined in the leaf package the agent
// links (see agentconfig).
type (
	AgentConfig  = agentconfig.Config
	AgentLogs    = agentconfig.Logs
	AgentNet     = agentconfig.Net
	AgentEtcd    = agentconfig.Etcd
	AgentInspect = agentconfig.Inspect
)

func (Agent) Name() string        { return "kubeup-agent" }
func (Agent) Description() string { return "kubeup node agent" }
func (Agent) Roles() []Role       { return []Role{Master, Node} }

// Unit: the agent sends READY=1 and pings the watchdog from its main loop.
// It is sandboxed to what its code does (daemons/agent):
//   - writes: its state (log buffer, journal cursor, file offsets), the CNI
//     config (cni.go), static pod manifests (manifests.go), and the xtables
//     lock iptables takes (masq.go; the image creates the file);
//   - CAP_NET_ADMIN for the routes to other machines' pod networks
//     (routes.go, netlink) and the masquerade rule (masq.go, iptables),
//     CAP_NET_RAW for iptables' legacy backend; nothing else: it runs as
//     root and every file it reads (journal, pod logs, audit log,
//     certificates, kubeconfigs) is root's, so it needs no DAC override;
//   - sockets: TCP/UDP (API server, aggregator, etcd, its HTTPS server),
//     unix (D-Bus for unit states, sd_notify), netlink (routes, iptables);
//   - system calls: @system-service covers the Go runtime, journalctl and
//     iptables (it runs both), madvise/fadvise/fdatasync of the memory
//     release (trim.go); none of @privileged (chown, setuid, capset, ...)
//     is used; a refused call fails with EPERM rather than killing the
//     agent. @resources stays: the Go runtime raises its open-file limit
//     (prlimit) at start, and the agent holds a file per followed log.
func (a Agent) Unit(role Role) systemd.Unit {
	return service(a, role, AgentBinary+" agent", systemd.Service{
		Type:        "notify",
		WatchdogSec: agentWatchdog,
		Limits:      map[string]string{"MemoryMax": "128M"},
		// The images boot with transparent huge pages "madvise"; on a
		// kernel left at "always" every heap region the agent touches
		// would be backed by a 2 MiB page, about 10 MB of RSS over its
		// few MB of live heap.
		Environment:     map[string]string{"GODEBUG": "disablethp=1"},
		NoNewPrivileges: true,
		ProtectSystem:   "strict",
		ProtectHome:     true,
		PrivateTmp:      true,
		ReadWritePaths:  []string{AgentStateDir, CNIConfDir, StaticPodDir, "-" + XtablesLock},
		Sandbox:         daemonSandbox([]string{"CAP_NET_ADMIN", "CAP_NET_RAW"}, "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"),
	})
}

// XtablesLock is the lock iptables' legacy backend takes; the image creates
// it at boot (ImageFiles) so that a sandboxed agent can be given it.
const XtablesLock = "/run/xtables.lock"

// daemonSandbox is the sandbox of kubeup's own daemons: no devices, kernel
// settings, modules, logs, clock, hostname, mounts, control groups or
// namespaces; only the given capabilities and socket families; the system
// calls of an unprivileged service; files it creates private to root. Not
// set, and why: User= (the agent must be root for netlink and iptables and
// reads root's 0600 files), PrivateNetwork= and IPAddressDeny= (they serve
// and reach the cluster network), ProcSubset=pid (the agent reads
// /proc/uptime and /proc/net, the metrics /proc/stat).
func daemonSandbox(caps []string, families ...string) *systemd.Sandbox {
	return &systemd.Sandbox{
		CapabilityBoundingSet:   caps,
		PrivateDevices:          true,
		ProtectKernelTunables:   true,
		ProtectKernelModules:    true,
		ProtectKernelLogs:       true,
		ProtectControlGroups:    true,
		ProtectClock:            true,
		ProtectHostname:         true,
		PrivateMounts:           true,
		ProtectProc:             "invisible",
		RestrictNamespaces:      true,
		RestrictRealtime:        true,
		RestrictSUIDSGID:        true,
		LockPersonality:         true,
		MemoryDenyWriteExecute:  true,
		RestrictAddressFamilies: families,
		SystemCallFilter:        []string{"@system-service"},
		SystemCallDeny:          []string{"@privileged"},
		SystemCallErrorNumber:   "EPERM",
		SystemCallArchitectures: "native",
		UMask:                   "0077",
	}
}

// ImageFiles: the xtables lock, created at boot (a sandboxed agent may
// write only files that exist when it starts).
func (Agent) ImageFiles() []File {
	return []File{{Path: "/usr/lib/tmpfiles.d/kubeup-agent.conf", Mode: 0o644,
		Content: []byte("# The lock iptables takes, writable by the sandboxed kubeup-agent.\nf " + XtablesLock + " 0600 root root -\n")}}
}

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
		cfg.Units = append(cfg.Units, comp.Name()+".service")
	}
	cfg.Inspect = inspect(m.Role)
	if m.Role == Master {
		cfg.Logs.AuditLog = AuditLogPath
		cfg.Scrape["etcd"] = "http://" + EtcdMetricsAddr + "/metrics"
		cfg.Etcd = &AgentEtcd{
			Endpoints: []string{fmt.Sprintf("https://127.0.0.1:%d", EtcdClientPort)},
			CAFile:    pki("etcd/ca.crt"),
			CertFile:  pki("etcd/healthcheck-client.crt"),
			KeyFile:   pki("etcd/healthcheck-client.key"),
		}
	}
	return cfg
}

// inspect is what the agent reports for the CIS checks (provision/verify):
// every component's flags; the content of the configuration files that hold
// no secret; and the mode and owner of the units, the flag files, the
// kubeconfigs and certificates, the CNI configuration and etcd's data.
func inspect(r Role) AgentInspect {
	in := AgentInspect{EnvFiles: map[string]string{}}
	for _, c := range ForRole(r) {
		unit := c.Name() + ".service"
		in.EnvFiles[unit] = EnvFile(c.Name())
		in.Paths = append(in.Paths, UnitDir+"/"+unit)
	}
	in.ConfigFiles = []string{KubeletConfigPath, KubeProxyConfigPath}
	in.Paths = append(in.Paths, EnvDir, KubernetesDir, KubeletCertDir, CNIConfDir)
	if r == Master {
		in.ConfigFiles = append(in.ConfigFiles, SchedulerConfigPath, AdmissionConfigPath, AuditPolicyPath)
		in.Paths = append(in.Paths, EtcdDataDir)
	}
	return in
}

// UnitDir is where the images install the units.
const UnitDir = "/etc/systemd/system"

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
