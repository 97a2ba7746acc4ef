package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/mirror"
	"kubeup.dev/kubeup/daemons/httpauth"
	"kubeup.dev/kubeup/systemd"
)

// Options are the daemon's links to the outside world; zero fields use the
// real thing (tests swap them).
type Options struct {
	Log *slog.Logger
	// Units reads systemd units; default: the system bus.
	Units UnitReader
	// Control starts and stops units (the admin API, a restore); default:
	// the system bus.
	Control UnitControl
	// Command runs programs (etcdutl); default: exec.
	Command CommandFunc
	// Etcdutl is etcdutl's path; default DefaultEtcdutl.
	Etcdutl string
	// Snapshot streams etcd snapshots; default: clientv3 to the member.
	Snapshot SnapshotFunc
	// Readd re-adds etcd members; default: clientv3 to the member.
	Readd ReaddFunc
	// Journal runs journalctl; default: exec.
	Journal JournalFunc
	// Routes is the routing table; default: netlink in the current namespace.
	Routes RouteTable
	// Masquerade keeps the NAT rule; default: iptables.
	Masquerade Masquerader
	// Kube is the API client; default: built from Config.Kubeconfig once the
	// file exists.
	Kube KubeAPI
	// Now is the clock; default time.Now.
	Now func() time.Time
	// Uptime is the machine's uptime; default /proc/uptime.
	Uptime func() (time.Duration, error)
	// StaticPodDir is the kubelet's manifest directory; default the
	// configuration's staticPodDir, or /etc/kubernetes/manifests.
	StaticPodDir string
	// PodLogDir is the kubelet's container log directory; default
	// /var/log/pods.
	PodLogDir string
	// ProcNet is where the kernel lists sockets; default /proc/net.
	ProcNet string
	// Images is what the registry mirror serves; default: the machine's
	// containerd (CRI namespace), when the configuration has a
	// registryMirror.
	Images mirror.Store
}

// Daemon is `kubeup-agent agent`.
type Daemon struct {
	cfg     *agentconfig.Config
	log     *slog.Logger
	now     func() time.Time
	uptime  func() (time.Duration, error)
	started time.Time

	tls     *httpauth.TLSFiles
	kube    *kubeClient
	units   UnitReader
	journal JournalFunc
	auth    *httpauth.Authenticator
	certs   *certScanner
	renew   *certRenewal // nil without cfg.Renewal
	podnet  *podNetwork
	logs    *logPipeline // nil when cfg.Logs.Forward is empty
	etcd    *etcdHealth  // nil without cfg.Etcd (nodes)
	mem     *memoryRelease
	sup     *supervisor
	reg     *prometheus.Registry
	scrape  *http.Client
	// images backs the registry mirror; nil without cfg.RegistryMirror.
	images       mirror.Store
	mirrorServed *prometheus.CounterVec

	serving    chan struct{} // closed when the HTTPS server stops
	podDir     string
	procNetDir string

	control UnitControl
	// snapshot streams a snapshot of the local etcd member and restore
	// rebuilds it from one; nil without an etcd member (nodes).
	snapshot  SnapshotFunc
	restore   *etcdRestore
	readd     ReaddFunc     // re-adds another master's etcd member (replace)
	restoring chan struct{} // holds a token while a restore runs
}

func (d *Daemon) staticPodDir() string {
	if d.podDir != "" {
		return d.podDir
	}
	if d.cfg.StaticPodDir != "" {
		return d.cfg.StaticPodDir
	}
	return defaultStaticPodDir
}

// defaultStaticPodDir is the kubelet's usual manifest directory, for a
// configuration without staticPodDir.
const defaultStaticPodDir = "/etc/kubernetes/manifests"

// New builds the daemon from a validated configuration; it loads the
// serving certificate and client CA, so a machine without them fails here.
func New(cfg *agentconfig.Config, o Options) (*Daemon, error) {
	if err := ValidateConfig(cfg); err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Units == nil {
		o.Units = &dbusUnits{}
	}
	if o.Control == nil {
		if c, ok := o.Units.(UnitControl); ok {
			o.Control = c // one bus connection for both
		} else {
			o.Control = &dbusUnits{}
		}
	}
	if o.Command == nil {
		o.Command = execCommand
	}
	if o.Etcdutl == "" {
		o.Etcdutl = DefaultEtcdutl
	}
	if o.Journal == nil {
		o.Journal = execJournal
	}
	if o.Routes == nil {
		o.Routes = newNetlinkRoutes(nil)
	}
	if o.Masquerade == nil {
		o.Masquerade = newIPTablesMasq()
	}
	if o.Uptime == nil {
		o.Uptime = machineUptime
	}
	t, err := httpauth.NewTLSFiles(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile, o.Now)
	if err != nil {
		return nil, err
	}
	d := &Daemon{
		cfg: cfg, log: o.Log, now: o.Now, uptime: o.Uptime, started: o.Now(), podDir: o.StaticPodDir, procNetDir: o.ProcNet,
		tls: t, units: o.Units, journal: o.Journal,
		scrape:  &http.Client{Timeout: maxScrapeTimeout, Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 1}},
		serving: make(chan struct{}),
	}
	if o.Kube != nil {
		d.kube = newReadyKubeClient(o.Kube)
	} else {
		d.kube = newKubeClient(cfg.Kubeconfig, o.Log.With("task", "kubeconfig"))
	}
	d.control, d.restoring = o.Control, make(chan struct{}, 1)
	d.auth = httpauth.NewAuthenticator(t, d.kube, "kubeup-agent", o.Now)
	d.certs = &certScanner{dirs: cfg.CertificateDirs}
	if cfg.Renewal != nil {
		d.renew = newCertRenewal(*cfg.Renewal, cfg.Machine, d.kube, o.Log.With("task", "certificate-renewal"), o.Now)
	}
	d.podnet = &podNetwork{
		machine:     cfg.Machine,
		clusterCIDR: netip.MustParsePrefix(cfg.Network.ClusterPodCIDR), // validated
		cniDir:      cfg.Network.CNIConfDir,
		kube:        d.kube,
		routes:      o.Routes,
		masq:        o.Masquerade,
		log:         o.Log.With("task", "pod-network"),
		now:         o.Now,
	}
	if cfg.Logs.Forward != "" {
		if d.logs, err = newLogPipeline(cfg, o.Journal, o.PodLogDir, o.Log); err != nil {
			return nil, err
		}
	}
	if cfg.Etcd != nil {
		if d.etcd, err = newEtcdHealth(cfg.Etcd, o.Log.With("task", "etcd-health")); err != nil {
			return nil, err
		}
		if d.snapshot = o.Snapshot; d.snapshot == nil {
			if d.snapshot, err = newEtcdSnapshotFunc(*cfg.Etcd); err != nil {
				return nil, err
			}
		}
		if d.readd = o.Readd; d.readd == nil {
			d.readd = newEtcdReaddFunc(*cfg.Etcd)
		}
		if m, s := cfg.Etcd.Member, cfg.Etcd.Snapshots; m != nil && s != nil {
			d.restore = &etcdRestore{machine: cfg.Machine, member: *m, dir: s.Dir, etcdutl: o.Etcdutl,
				units: o.Control, run: o.Command, now: o.Now, log: o.Log.With("task", "etcd-restore")}
		}
	}
	if cfg.RegistryMirror != "" {
		if d.images = o.Images; d.images == nil {
			cs, err := mirror.NewContainerdStore(ContainerdSocket, ContainerdNamespace)
			if err != nil {
				return nil, fmt.Errorf("registry mirror: %w", err)
			}
			d.images = cs
		}
		d.mirrorServed = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_agent_registry_mirror_requests_total",
			Help: "Requests the machine's registry mirror answered (containerd pulling images the machine has), by method and HTTP status code.",
		}, []string{"method", "code"})
	}
	d.mem = newMemoryRelease(o.Log.With("task", "memory-release"))
	d.sup = newSupervisor(d.tasks(), o.Log, o.Now)
	d.reg = newRegistry(d.units, cfg.Units, d.certs, d.podnet, o.Now)
	if d.mirrorServed != nil {
		d.reg.MustRegister(d.mirrorServed)
	}
	d.reg.MustRegister(d.mem.released)
	if d.renew != nil {
		d.reg.MustRegister(d.renew.renewals)
	}
	if d.logs != nil {
		d.reg.MustRegister(d.logs.metrics)
	}
	if d.etcd != nil {
		d.reg.MustRegister(d.etcd)
	}
	if cfg.Etcd != nil && cfg.Etcd.Snapshots != nil {
		d.reg.MustRegister(&snapshotCollector{cfg: *cfg.Etcd.Snapshots})
	}
	return d, nil
}

// tasks is the daemon's work, in start order.
func (d *Daemon) tasks() []Task {
	tasks := []Task{
		d.kube,   // waits for the kubelet's kubeconfig, then publishes a client
		d.certs,  // certificate expiry, rescanned every minute
		d.podnet, // CNI config, routes to other machines' pod CIDRs, masquerade
	}
	if d.renew != nil {
		// Certificates renewed when a third of their lifetime is left.
		tasks = append(tasks, d.renew)
	}
	if d.logs != nil {
		// The forwarder (aggregator connection, disk buffer), then its
		// sources: the units' journal and the containers' log files.
		tasks = append(tasks, d.logs.tasks()...)
	}
	if d.etcd != nil {
		tasks = append(tasks, d.etcd) // etcd member health, every 30 s
	}
	// Start-up-only memory back to the kernel, 5 and 10 min after start.
	return append(tasks, d.mem)
}

// Run serves until ctx ends: READY=1 once the HTTPS listener is up,
// WATCHDOG=1 while healthy, STOPPING=1 and a graceful shutdown at the end.
func (d *Daemon) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", d.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", d.cfg.Listen, err)
	}
	srv := &http.Server{
		Handler:           d.Handler(),
		TLSConfig:         d.tls.ServerConfig(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		defer close(d.serving)
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", d.cfg.Listen, err)
		}
		return nil
	})
	var mirrorSrv *http.Server
	if d.images != nil {
		mln, err := net.Listen("tcp", d.cfg.RegistryMirror)
		if err != nil {
			ln.Close()
			return fmt.Errorf("registry mirror: listen on %s: %w", d.cfg.RegistryMirror, err)
		}
		mirrorSrv = &http.Server{
			Handler:           d.MirrorHandler(),
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelDebug),
		}
		g.Go(func() error {
			if err := mirrorSrv.Serve(mln); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("registry mirror: serve %s: %w", d.cfg.RegistryMirror, err)
			}
			return nil
		})
	}
	g.Go(func() error { return d.sup.Run(gctx) })
	if err := systemd.Ready(); err != nil {
		d.log.Warn("cannot notify systemd", "err", err)
	}
	d.log.Info("agent ready", "listen", ln.Addr().String(), "registryMirror", d.cfg.RegistryMirror, "machine", d.cfg.Machine, "role", d.cfg.Role)
	g.Go(func() error {
		err := systemd.Watchdog(gctx, func() error {
			err := d.Healthy()
			if err != nil {
				d.log.Error("unhealthy; not pinging the watchdog", "err", err)
			}
			return err
		})
		if err != nil {
			d.log.Warn("watchdog", "err", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		d.log.Info("shutting down")
		_ = systemd.Stopping()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		if mirrorSrv != nil {
			if err := mirrorSrv.Shutdown(sctx); err != nil {
				mirrorSrv.Close()
			}
		}
		return nil
	})
	err = g.Wait()
	if c, ok := d.units.(interface{ Close() }); ok {
		c.Close()
	}
	if c, ok := d.images.(io.Closer); ok {
		c.Close()
	}
	return err
}

// MirrorHandler is the registry mirror (plain HTTP on cfg.RegistryMirror,
// loopback): the pull side of the registry API over the images the
// machine's containerd holds, counted by method and status. Nil without a
// registryMirror.
func (d *Daemon) MirrorHandler() http.Handler {
	if d.images == nil {
		return nil
	}
	return promhttp.InstrumentHandlerCounter(d.mirrorServed,
		mirror.Handler(d.images, d.log.With("task", "registry-mirror")))
}

// Healthy is the watchdog's check: the HTTPS server and every task loop
// are alive, and no task reports itself wedged.
func (d *Daemon) Healthy() error {
	select {
	case <-d.serving:
		return errors.New("https server stopped")
	default:
	}
	return d.sup.Healthy()
}
