package ui

import (
	"context"
	"fmt"
	"maps"
	"math"
	"slices"
	"strings"
	"time"

	promv1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"
	"golang.org/x/sync/errgroup"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Machine is one machine's kubeup units, as its kubeup-agent reports them
// through Prometheus.
type Machine struct {
	Name string `json:"name"`
	// Reporting is false for a Node no agent metrics arrive from.
	Reporting bool   `json:"reporting"`
	Units     []Unit `json:"units"`
	// CertificateExpirySeconds is the time left on the machine's first
	// certificate to expire; nil when not reported.
	CertificateExpirySeconds *float64 `json:"certificateExpirySeconds,omitempty"`
}

// Unit is a systemd unit's ActiveState and automatic restarts.
type Unit struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Restarts int64  `json:"restarts"`
}

// Active says whether the unit is in the state it should be in.
func (u Unit) Active() bool { return u.State == "active" }

// Healthy says whether the machine reports and all its units are active.
func (m Machine) Healthy() bool {
	if !m.Reporting {
		return false
	}
	for _, u := range m.Units {
		if !u.Active() {
			return false
		}
	}
	return true
}

// CertificateExpiry formats CertificateExpirySeconds for people.
func (m Machine) CertificateExpiry() string {
	if m.CertificateExpirySeconds == nil {
		return ""
	}
	s := *m.CertificateExpirySeconds
	if s <= 0 {
		return "expired"
	}
	return "in " + duration.HumanDuration(time.Duration(s*float64(time.Second)))
}

// CertificateExpirySoon says whether the first certificate to expire does
// so within certificateWarning.
func (m Machine) CertificateExpirySoon() bool {
	return m.CertificateExpirySeconds != nil && *m.CertificateExpirySeconds < certificateWarning.Seconds()
}

const certificateWarning = 30 * 24 * time.Hour

// The PromQL queries the page makes. Series are grouped by the machine
// label the scrape configuration adds, or by instance without it.
const (
	QueryUnitState    = `kubeup_unit_state == 1`
	QueryUnitRestarts = `kubeup_unit_restarts_total`
	QueryCertExpiry   = `min by (machine, instance) (kubeup_certificate_expiry_seconds)`
)

// queryMachines asks Prometheus for every machine's unit states, restarts
// and first certificate expiry.
func queryMachines(ctx context.Context, api promv1.API) ([]Machine, error) {
	queries := []string{QueryUnitState, QueryUnitRestarts, QueryCertExpiry}
	results := make([]model.Vector, len(queries))
	g, gctx := errgroup.WithContext(ctx)
	for i, q := range queries {
		g.Go(func() error {
			// A zero time lets Prometheus use its own clock.
			v, _, err := api.Query(gctx, q, time.Time{})
			if err != nil {
				return fmt.Errorf("query %s: %w", q, err)
			}
			vec, ok := v.(model.Vector)
			if !ok {
				return fmt.Errorf("query %s: got a %s, want a vector", q, v.Type())
			}
			results[i] = vec
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}

	machines := map[string]*Machine{}
	units := map[string]map[string]*Unit{}
	unit := func(s *model.Sample) *Unit {
		name := machineName(s.Metric)
		if machines[name] == nil {
			machines[name] = &Machine{Name: name, Reporting: true}
			units[name] = map[string]*Unit{}
		}
		u := string(s.Metric["unit"])
		if units[name][u] == nil {
			units[name][u] = &Unit{Name: u}
		}
		return units[name][u]
	}
	for _, s := range results[0] {
		unit(s).State = string(s.Metric["state"])
	}
	for _, s := range results[1] {
		if !math.IsNaN(float64(s.Value)) {
			unit(s).Restarts = int64(s.Value)
		}
	}
	for _, s := range results[2] {
		name := machineName(s.Metric)
		if machines[name] == nil {
			machines[name] = &Machine{Name: name, Reporting: true}
		}
		v := float64(s.Value)
		machines[name].CertificateExpirySeconds = &v
	}
	out := make([]Machine, 0, len(machines))
	for _, name := range slices.Sorted(maps.Keys(machines)) {
		m := machines[name]
		for _, u := range slices.Sorted(maps.Keys(units[name])) {
			un := *units[name][u]
			if un.State == "" {
				un.State = "unknown" // restarts reported, no state
			}
			m.Units = append(m.Units, un)
		}
		out = append(out, *m)
	}
	return out, nil
}

func machineName(m model.Metric) string {
	if n := m["machine"]; n != "" {
		return string(n)
	}
	return string(m["instance"])
}

// withSilentNodes adds a non-reporting Machine for every Node that has
// no metrics (its agent is down, or not scraped), keeping the order by name.
func withSilentNodes(machines []Machine, nodes []Node) []Machine {
	known := map[string]bool{}
	for _, m := range machines {
		known[m.Name] = true
	}
	for _, n := range nodes {
		if !known[n.Name] {
			machines = append(machines, Machine{Name: n.Name, Units: []Unit{}})
		}
	}
	slices.SortFunc(machines, func(a, b Machine) int { return strings.Compare(a.Name, b.Name) })
	return machines
}
