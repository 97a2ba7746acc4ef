package addonmanager

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Metrics are the addon manager's Prometheus metrics, on their own registry.
type Metrics struct {
	Registry *prometheus.Registry

	applied     *prometheus.CounterVec
	skipped     *prometheus.CounterVec
	failed      *prometheus.CounterVec
	pruned      *prometheus.CounterVec
	restored    *prometheus.CounterVec
	lastSuccess prometheus.Gauge
	lastSync    prometheus.Gauge
	manifest    *prometheus.GaugeVec
	csr         *prometheus.CounterVec
	csrSigned   *prometheus.CounterVec
	nodeLabels  prometheus.Counter
}

// NewMetrics registers the metrics, plus the Go runtime and process
// collectors, on a new registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		applied: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_addon_objects_applied_total",
			Help: "Objects applied (Reconcile) or created (EnsureExists) successfully, by kind.",
		}, []string{"kind"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_addon_objects_unchanged_total",
			Help: "Objects a sync found as last applied (same manifest, same object, every declared field as declared) and did not apply again, by kind.",
		}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_addon_objects_failed_total",
			Help: "Failed attempts to apply, create or prune an object, by kind.",
		}, []string{"kind"}),
		pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_addon_objects_pruned_total",
			Help: "Reconcile objects deleted because no manifest declares them any more, by kind.",
		}, []string{"kind"}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_addon_restored_total",
			Help: "Objects re-created after a deletion or re-applied after an edit away from their manifest.",
		}, []string{"kind", "name"}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeup_addon_last_successful_sync_timestamp_seconds",
			Help: "Unix time of the end of the last sync in which every manifest loaded and every object applied.",
		}),
		lastSync: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeup_addon_last_sync_timestamp_seconds",
			Help: "Unix time of the end of the last sync, successful or not.",
		}),
		manifest: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kubeup_addon_manifest_objects",
			Help: "Objects declared by the manifests at the last sync, by mode; mode=\"refused\" counts refused files and objects.",
		}, []string{"mode"}),
		csr: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_addon_csr_decisions_total",
			Help: "Decisions about kubelet serving CSRs and the node agents' renewal CSRs: approved, denied, or pending (counted once per CSR and reason).",
		}, []string{"decision"}),
		csrSigned: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_addon_csr_signed_total",
			Help: "Approved CSRs of kubeup's own signer (the node agents' certificates) signed, by result (success or failure).",
		}, []string{"result"}),
		nodeLabels: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeup_addon_node_role_labels_total",
			Help: "Node role labels added.",
		}),
	}
	m.Registry.MustRegister(m.applied, m.skipped, m.failed, m.pruned, m.restored, m.lastSuccess, m.lastSync,
		m.manifest, m.csr, m.csrSigned, m.nodeLabels,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}
