package logforward

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Sources of kubeup_log_entries_read_total.
const (
	SourceJournal = "journal"
	SourcePod     = "pod"
	SourceAudit   = "audit"
)

// Metrics are log forwarding's metrics, registered by the agent in its
// own registry:
//
//	kubeup_log_entries_read_total{source}     records read from the journal / pod log files /
//	                                          the API server's audit log
//	kubeup_log_entries_sent_total             records the aggregator acked
//	kubeup_log_forward_batches_total          messages the aggregator acked (each
//	                                          carries up to 512 records of one tag)
//	kubeup_log_entries_buffered               records in the on-disk buffer
//	kubeup_log_buffer_bytes                   bytes the buffer's segment files take
//	kubeup_log_entries_dropped_total{reason}  records lost: buffer_full (oldest
//	                                          segment deleted at the bound), corrupt
//	                                          (unreadable buffer frame), too_large
//	kubeup_log_forward_up                     1 while the aggregator accepts records
//	kubeup_log_forward_errors_total           failed connects and sends (each one
//	                                          buffers records or delays a resend)
type Metrics struct {
	Read     *prometheus.CounterVec
	Sent     prometheus.Counter
	Batches  prometheus.Counter
	Dropped  *prometheus.CounterVec
	Up       prometheus.Gauge
	Errors   prometheus.Counter
	buffered prometheus.Gauge
	bytes    prometheus.Gauge
}

// NewMetrics creates the metrics, every label value present from the start
// (a counter that appears only at its first increment hides the increase).
func NewMetrics() *Metrics {
	m := &Metrics{
		Read: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_log_entries_read_total",
			Help: "Log records read, by source (journal, pod, audit).",
		}, []string{"source"}),
		Sent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeup_log_entries_sent_total",
			Help: "Log records the aggregator acknowledged.",
		}),
		Batches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeup_log_forward_batches_total",
			Help: "Forward-mode messages (batches of log records of one tag) the log aggregator acknowledged.",
		}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kubeup_log_entries_dropped_total",
			Help: "Log records lost, by reason: buffer_full (the on-disk buffer reached its bound and its oldest segment was deleted), corrupt (an unreadable buffer frame), too_large.",
		}, []string{"reason"}),
		Up: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeup_log_forward_up",
			Help: "1 while the log aggregator accepts and acknowledges records.",
		}),
		Errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kubeup_log_forward_errors_total",
			Help: "Failed connections to and sends to the log aggregator.",
		}),
		buffered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeup_log_entries_buffered",
			Help: "Log records in the on-disk buffer, waiting for the aggregator.",
		}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kubeup_log_buffer_bytes",
			Help: "Bytes the on-disk log buffer's segment files take.",
		}),
	}
	for _, s := range []string{SourceJournal, SourcePod, SourceAudit} {
		m.Read.WithLabelValues(s)
	}
	for _, r := range []string{DropBufferFull, DropCorrupt, DropTooLarge} {
		m.Dropped.WithLabelValues(r)
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.Read, m.Sent, m.Batches, m.Dropped, m.Up, m.Errors, m.buffered, m.bytes}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
}

func (m *Metrics) setBuffer(records, bytes int64) {
	m.buffered.Set(float64(records))
	m.bytes.Set(float64(bytes))
}
