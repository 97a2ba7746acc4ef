package addonmanager

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/daemons/httpauth"
	"kubeup.dev/kubeup/systemd"
)

// Client settings: the rate allows a few dozen objects per sync without
// client-side throttling. There is no client-wide timeout, which would cut
// the informers' watches: each call gets callTimeout instead.
const (
	clientQPS         = 20
	clientBurst       = 50
	apiPollInterval   = 2 * time.Second
	apiLogInterval    = 30 * time.Second
	shutdownTimeout   = 5 * time.Second
	watchdogSlack     = 30 * time.Second
	readHeaderTimeout = 10 * time.Second
)

// Run runs the addon manager until ctx ends. It returns an error only for
// what a restart cannot fix by waiting (a bad kubeconfig, unreadable
// certificates, a port in use); an API server that is not up yet is waited
// for, with the watchdog pinged meanwhile.
func Run(ctx context.Context, cfg components.AddonManagerConfig, log *slog.Logger) error {
	restCfg, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
	if err != nil {
		return fmt.Errorf("load kubeconfig %s: %w", cfg.Kubeconfig, err)
	}
	restCfg.UserAgent = FieldManager
	restCfg.QPS, restCfg.Burst = clientQPS, clientBurst
	client, err := kubernetes.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("kubernetes client: %w", err)
	}
	dyn, err := dynamic.NewForConfig(restCfg)
	if err != nil {
		return fmt.Errorf("dynamic client: %w", err)
	}
	var rendered []components.File
	if cfg.Addons != nil {
		// A cluster no addon can be rendered for is the config's fault:
		// waiting would not fix it.
		if rendered, err = addons.Manifests(cfg.Addons); err != nil {
			return fmt.Errorf("render the addons of the config's cluster: %w", err)
		}
	}
	metrics := NewMetrics()
	resync := cfg.Resync.Duration
	rec := NewReconciler(ReconcilerOptions{
		Dirs: cfg.ManifestDirs, Rendered: rendered, Resync: resync, Client: dyn,
		Mapper:  restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(client.Discovery())),
		Log:     log.With("controller", "addons"),
		Metrics: metrics,
		OnSync: func(r SyncResult) {
			_ = systemd.Status(fmt.Sprintf("%d objects declared, %d failed, %d refused at %s",
				r.Declared, r.Failed, r.Refused, time.Now().Format(time.TimeOnly)))
		},
	})

	// healthy: the last sync ended within twice the resync period.
	healthy := func() error {
		last := rec.LastRun()
		if last.IsZero() {
			return errors.New("no sync yet: waiting for the API server or the first sync")
		}
		if age := time.Since(last); age > 2*resync {
			return fmt.Errorf("last sync ended %s ago", age.Round(time.Second))
		}
		return nil
	}
	// alive, for the watchdog: the wait loop or the sync loop made progress.
	var heartbeat atomic.Int64
	touch := func() { heartbeat.Store(time.Now().UnixNano()) }
	touch()
	alive := func() error {
		last := time.Unix(0, heartbeat.Load())
		if r := rec.LastRun(); r.After(last) {
			last = r
		}
		if age := time.Since(last); age > 2*resync+watchdogSlack {
			return fmt.Errorf("no progress for %s", age.Round(time.Second))
		}
		return nil
	}

	files, err := httpauth.NewTLSFiles(cfg.CertFile, cfg.KeyFile, cfg.ClientCAFile, time.Now)
	if err != nil {
		return err
	}
	auth := newAuthenticator(files, client)
	srv := &http.Server{
		Handler:           Handler(healthy, metrics, auth.Metrics, log),
		TLSConfig:         files.ServerConfig(),
		ReadHeaderTimeout: readHeaderTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.ServeTLS(ln, "", "") }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	// Ready once serving: the API server may take minutes (TCG guests), and
	// TimeoutStartSec must not kill a manager that is merely waiting.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := systemd.Ready(); err != nil {
		log.Warn("sd_notify", "err", err)
	}
	go func() {
		if err := systemd.Watchdog(ctx, alive); err != nil {
			log.Warn("watchdog", "err", err)
		}
	}()
	log.Info("addon manager started", "listen", cfg.Listen, "manifestDirs", cfg.ManifestDirs, "rendered", len(rendered), "resync", resync)

	_ = systemd.Status("waiting for the API server")
	if err := waitForAPIServer(ctx, client, log, touch); err != nil {
		_ = systemd.Stopping()
		log.Info("addon manager stopped before the API server was ready")
		return nil // ctx ended
	}

	factory := informers.NewSharedInformerFactory(client, resync)
	signer := &Signer{CertFile: cfg.Signer.CertFile, KeyFile: cfg.Signer.KeyFile, Duration: cfg.Signer.Duration.Duration}
	approver, err := NewCSRApprover(client, factory, log.With("controller", "csr-approver"), metrics, signer)
	if err != nil {
		return err
	}
	var podCIDRs map[string]string
	if cfg.Addons != nil {
		podCIDRs = cfg.Addons.PodCIDRs
	}
	labeler, err := NewNodeLabeler(client, factory, log.With("controller", "node-labeler"), metrics, podCIDRs)
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer func() {
		cancel()
		factory.Shutdown()
	}()
	cache.WaitForCacheSync(ctx.Done(), factory.Certificates().V1().CertificateSigningRequests().Informer().HasSynced,
		factory.Core().V1().Nodes().Informer().HasSynced)
	go approver.Run(ctx)
	go labeler.Run(ctx)

	done := make(chan struct{})
	go func() {
		rec.Run(ctx)
		close(done)
	}()
	select {
	case <-done:
	case err := <-serveErr:
		cancel()
		<-done
		if !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve %s: %w", cfg.Listen, err)
		}
	}
	_ = systemd.Stopping()
	log.Info("addon manager stopped")
	return nil
}

// waitForAPIServer polls /readyz until it answers, touching the heartbeat
// and logging now and then.
func waitForAPIServer(ctx context.Context, client kubernetes.Interface, log *slog.Logger, touch func()) error {
	var lastLog time.Time
	for {
		touch()
		rctx, cancel := context.WithTimeout(ctx, callTimeout)
		_, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(rctx)
		cancel()
		if err == nil {
			log.Info("API server is ready")
			return nil
		}
		if time.Since(lastLog) >= apiLogInterval {
			log.Info("waiting for the API server", "err", err)
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(apiPollInterval):
		}
	}
}
