package agent

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// unitActiveStates are systemd's ActiveState values (systemd 252): the
// members of the kubeup_unit_state state set.
var unitActiveStates = []string{"active", "reloading", "inactive", "failed", "activating", "deactivating", "maintenance"}

const unitReadTimeout = 5 * time.Second

// newRegistry is the agent's own registry (no global one): units,
// certificates, the pod network, and Go and process metrics.
func newRegistry(units UnitReader, names []string, certs *certScanner, pn *podNetwork, now func() time.Time) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&unitCollector{units: units, names: names},
		&certCollector{scanner: certs, now: now},
	)
	if pn != nil {
		reg.MustRegister(pn)
	}
	return reg
}

var (
	unitStateDesc = prometheus.NewDesc("kubeup_unit_state",
		"systemd ActiveState of a unit, as a state set: 1 for the current state, 0 for the others.",
		[]string{"unit", "state"}, nil)
	unitSubStateDesc = prometheus.NewDesc("kubeup_unit_sub_state",
		"systemd SubState of a unit (always 1; the state is the label).",
		[]string{"unit", "sub_state"}, nil)
	unitRestartsDesc = prometheus.NewDesc("kubeup_unit_restarts_total",
		"Automatic restarts of a service unit (systemd NRestarts).",
		[]string{"unit"}, nil)
	unitActiveSinceDesc = prometheus.NewDesc("kubeup_unit_active_since_seconds",
		"Unix time a unit last entered the active state (systemd ActiveEnterTimestamp).",
		[]string{"unit"}, nil)
	unitErrorDesc = prometheus.NewDesc("kubeup_unit_read_error",
		"1 when a unit's properties could not be read from systemd.",
		[]string{"unit"}, nil)
	systemdUpDesc = prometheus.NewDesc("kubeup_systemd_up",
		"1 when systemd answered over D-Bus during this scrape.", nil, nil)
)

// unitCollector asks systemd at scrape time, so values are never stale.
type unitCollector struct {
	units UnitReader
	names []string
}

func (c *unitCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{unitStateDesc, unitSubStateDesc, unitRestartsDesc, unitActiveSinceDesc, unitErrorDesc, systemdUpDesc} {
		ch <- d
	}
}

func (c *unitCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), unitReadTimeout)
	defer cancel()
	statuses, err := c.units.Units(ctx, c.names)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(systemdUpDesc, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(systemdUpDesc, prometheus.GaugeValue, 1)
	for _, s := range statuses {
		if s.Error != "" {
			ch <- prometheus.MustNewConstMetric(unitErrorDesc, prometheus.GaugeValue, 1, s.Name)
			continue
		}
		ch <- prometheus.MustNewConstMetric(unitErrorDesc, prometheus.GaugeValue, 0, s.Name)
		for _, st := range unitActiveStates {
			ch <- prometheus.MustNewConstMetric(unitStateDesc, prometheus.GaugeValue, boolValue(st == s.ActiveState), s.Name, st)
		}
		if s.SubState != "" {
			ch <- prometheus.MustNewConstMetric(unitSubStateDesc, prometheus.GaugeValue, 1, s.Name, s.SubState)
		}
		ch <- prometheus.MustNewConstMetric(unitRestartsDesc, prometheus.CounterValue, float64(s.Restarts), s.Name)
		if !s.ActiveSince.IsZero() {
			ch <- prometheus.MustNewConstMetric(unitActiveSinceDesc, prometheus.GaugeValue,
				float64(s.ActiveSince.UnixMicro())/1e6, s.Name)
		}
	}
}

var (
	certExpiryDesc = prometheus.NewDesc("kubeup_certificate_expiry_seconds",
		"Seconds until a certificate's NotAfter (negative once expired).",
		[]string{"path", "subject"}, nil)
	certErrorsDesc = prometheus.NewDesc("kubeup_certificate_scan_errors",
		"Files under the certificate directories that could not be read or parsed in the last scan.", nil, nil)
)

// certCollector reports the scanner's last findings, with the time left
// computed at scrape time.
type certCollector struct {
	scanner *certScanner
	now     func() time.Time
}

func (c *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- certExpiryDesc
	ch <- certErrorsDesc
}

func (c *certCollector) Collect(ch chan<- prometheus.Metric) {
	certs, errs := c.scanner.snapshot()
	now := c.now()
	for _, ci := range certs {
		ch <- prometheus.MustNewConstMetric(certExpiryDesc, prometheus.GaugeValue, ci.NotAfter.Sub(now).Seconds(), ci.Path, ci.Subject)
	}
	ch <- prometheus.MustNewConstMetric(certErrorsDesc, prometheus.GaugeValue, float64(errs))
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
