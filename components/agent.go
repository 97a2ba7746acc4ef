package components

import (
	"fmt"
	"slices"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	// AgentRegistryMirrorAddr is the agent's registry mirror: plain HTTP,
	// loopback only, read-only, serving the machine's own images to its
	// containerd (ContainerdHostsPath names it first for every registry).
	AgentRegistryMirrorAddr = "127.0.0.1:10292"
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
	AgentConfig  = agentconfig.Config
	AgentLogs    = agentconfig.Logs
	AgentNet     = agentconfig.Net
	AgentEtcd    = agentconfig.Etcd
	AgentInspect = agentconfig.Inspect
	// AgentEtcdMember is a master's etcd member (see EtcdMemberFor).
	AgentEtcdMember = agentconfig.EtcdMember
	// AgentEtcdSnapshots configures the scheduled snapshots.
	AgentEtcdSnapshots = agentconfig.EtcdSnapshots
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
		//
		// One P: the agent's work is a handful of loops, and with a P per
		// CPU the Go scheduler hands goroutines between idle threads at
		// every wake-up. Measured on an idle node under TCG: 73 context
		// switches a second fell to 8, and its CPU from 12% to 9%.
		Environment:     map[string]string{"GODEBUG": "disablethp=1", "GOMAXPROCS": "1"},
		NoNewPrivileges: true,
		ProtectSystem:   "strict",
		ProtectHome:     true,
		PrivateTmp:      true,
		ReadWritePaths:  agentWritePaths(role),
		Sandbox:         daemonSandbox([]string{"CAP_NET_ADMIN", "CAP_NET_RAW"}, "AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"),
	})
}

// agentWritePaths are the paths the sandboxed agent may write: its state,
// the CNI configuration, the static pod manifests, the xtables lock and the
// PKI directory (certificate renewal replaces files there); on a master
// also /var/lib, because an etcd restore renames the data directory
// /var/lib/etcd (and its staging and previous copies beside it), which a
// path of its own, bind-mounted, could not be.
func agentWritePaths(role Role) []string {
	paths := []string{AgentStateDir, CNIConfDir, StaticPodDir, PKIDir, "-" + XtablesLock}
	if role == Master {
		paths = append(paths, "/var/lib")
	}
	return paths
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
		Content: []byte("# Made at boot for the sandboxed kubeup-agent, which may write only paths that exist when it starts:\n" +
			"# the lock iptables takes and the PKI directory it renews certificates in.\n" +
			"f " + XtablesLock + " 0600 root root -\n" +
			"d " + PKIDir + " 0755 root root -\n")}}
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
		Network:        AgentNet{ClusterPodCIDR: c.PodCIDR.String(), CNIConfDir: CNIConfDir},
		RegistryMirror: AgentRegistryMirrorAddr,
		Scrape: map[string]string{
			"containerd": "http://" + ContainerdMetricsAddr + "/v1/metrics",
			"kube-proxy": "http://" + KubeProxyMetricsAddr + "/metrics",
			"apilb":      "http://" + APILBMetricsAddr + "/metrics",
		},
	}
	for _, comp := range ForRole(m.Role) {
		cfg.Units = append(cfg.Units, ActiveUnit(comp))
	}
	cfg.Renewal = &agentconfig.Renewal{Lifetime: metav1.Duration{Duration: c.LeafLifetime}, Dir: PKIDir}
	if m.Role == Node {
		for _, nc := range NodeCredentials() {
			q := agentconfig.RenewalRequest{CertFile: nc.CertFile, KeyFile: nc.KeyFile, SignerName: nc.SignerName}
			if c.NodesJoin {
				q.Template = nc.Template()
			}
			cfg.Renewal.Requests = append(cfg.Renewal.Requests, q)
		}
		if c.NodesJoin {
			cfg.Renewal.Join = &agentconfig.Join{BootstrapKubeconfig: BootstrapKubeconfig}
		}
	}
	cfg.Inspect = inspect(m.Role)
	if m.Role == Master {
		cfg.Logs.AuditLog = AuditLogPath
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
	AgentUser        = "kubeup-agent"
	AgentGroup       = "kubeup:agents"
	AgentClusterRole = "kubeup:agent"
	// AgentSignerName is kubeup's own CSR signer, run by the addon manager:
	// the agent's certificate serves as well as authenticates, and
	// kubernetes.io/kube-apiserver-client signs client certificates only.
	AgentSignerName = "kubeup.dev/agent"
)

// NodeCredential is a certificate from kubeup's PKI that nodes carry and
// renew through CertificateSigningRequests (they hold no CA key): the agent
// asks for the subject, names and usages of its current certificate with a
// new key, and the addon manager approves a request only when it is exactly
// one of these and comes from an agent.
type NodeCredential struct {
	CertFile, KeyFile string
	SignerName        string
	CommonName        string
	Organization      []string
	DNSNames          []string
	IPAddresses       []string
	Usages            []certificatesv1.KeyUsage
}

// Template is what a joining node's agent asks for the credential by.
func (nc NodeCredential) Template() *agentconfig.CertTemplate {
	return &agentconfig.CertTemplate{
		CommonName: nc.CommonName, Organization: nc.Organization, DNSNames: nc.DNSNames, IPAddresses: nc.IPAddresses,
		ServerAuth: slices.Contains(nc.Usages, certificatesv1.UsageServerAuth),
		ClientAuth: slices.Contains(nc.Usages, certificatesv1.UsageClientAuth),
	}
}

// NodeCredentials are the nodes' renewable certificates: the rows of
// provision/pki's table that go to nodes (a test keeps them equal).
func NodeCredentials() []NodeCredential {
	return []NodeCredential{
		{
			CertFile: pki("kubeup-agent.crt"), KeyFile: pki("kubeup-agent.key"), SignerName: AgentSignerName,
			CommonName: AgentUser, Organization: []string{AgentGroup},
			DNSNames: []string{"kubeup-agent", "localhost"}, IPAddresses: []string{"127.0.0.1"},
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageServerAuth, certificatesv1.UsageClientAuth},
		},
		{
			CertFile: pki("kube-proxy-client.crt"), KeyFile: pki("kube-proxy-client.key"),
			SignerName: certificatesv1.KubeAPIServerClientSignerName, CommonName: "system:kube-proxy",
			Usages: []certificatesv1.KeyUsage{certificatesv1.UsageDigitalSignature, certificatesv1.UsageClientAuth},
		},
	}
}

func (Agent) Files(ctx Context) ([]File, error) {
	data, err := yaml.Marshal(AgentConfigFor(ctx))
	if err != nil {
		return nil, fmt.Errorf("kubeup-agent config: %w", err)
	}
	kc, err := certKubeconfig(ctx.Cluster.Name, MachineAPIServer(), AgentUser, pki("kubeup-agent.crt"), pki("kubeup-agent.key"))
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
