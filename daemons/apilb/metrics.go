package apilb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

var (
	healthyDesc = prometheus.NewDesc("kubeup_apilb_backend_healthy",
		"1 while the API server passes its health checks (GET /readyz); not exported with a single API server, which is not checked.", []string{"backend"}, nil)
	activeDesc = prometheus.NewDesc("kubeup_apilb_connections_active",
		"Connections proxied to the API server now.", []string{"backend"}, nil)
	dialsDesc = prometheus.NewDesc("kubeup_apilb_dials_total",
		"Connections attempted to the API server.", []string{"backend"}, nil)
	dialFailuresDesc = prometheus.NewDesc("kubeup_apilb_dial_failures_total",
		"Connection attempts to the API server that failed (the next backend was tried).", []string{"backend"}, nil)
	checksDesc = prometheus.NewDesc("kubeup_apilb_health_checks_total",
		"Health checks of the API server.", []string{"backend"}, nil)
	checkFailuresDesc = prometheus.NewDesc("kubeup_apilb_health_check_failures_total",
		"Health checks of the API server that failed.", []string{"backend"}, nil)
	transitionsDesc = prometheus.NewDesc("kubeup_apilb_backend_transitions_total",
		"Times the API server went from healthy to unhealthy or back.", []string{"backend"}, nil)
	bytesDesc = prometheus.NewDesc("kubeup_apilb_bytes_total",
		"Bytes proxied, by direction (up: to the API server).", []string{"backend", "direction"}, nil)
)

// Describe and Collect make the balancer a Prometheus collector.
func (b *Balancer) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{healthyDesc, activeDesc, dialsDesc, dialFailuresDesc, checksDesc, checkFailuresDesc, transitionsDesc, bytesDesc} {
		ch <- d
	}
}

func (b *Balancer) Collect(ch chan<- prometheus.Metric) {
	for _, be := range b.backends {
		healthy := 0.0
		if be.healthy.Load() {
			healthy = 1
		}
		if b.checked() {
			ch <- prometheus.MustNewConstMetric(healthyDesc, prometheus.GaugeValue, healthy, be.addr)
		}
		ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(be.active()), be.addr)
		for d, v := range map[*prometheus.Desc]uint64{
			dialsDesc: be.dials.Load(), dialFailuresDesc: be.dialFailures.Load(),
			checksDesc: be.checks.Load(), checkFailuresDesc: be.checkFailures.Load(),
			transitionsDesc: be.transitions.Load(),
		} {
			ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), be.addr)
		}
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(be.bytesUp.Load()), be.addr, "up")
		ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(be.bytesDown.Load()), be.addr, "down")
	}
}

// Handler serves /healthz (200 while the balancer serves: a restart would
// not help when every API server is down), /readyz (200 when an API server
// is healthy), /status (the backends as JSON) and /metrics.
func (b *Balancer) Handler() http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(b)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !b.anyHealthy() {
			http.Error(w, "no healthy API server", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(b.Status())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// ServeMetrics serves Handler on addr (loopback: the agent serves the
// metrics onwards) until ctx ends.
func (b *Balancer) ServeMetrics(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: b.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
