package drills

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
)

// maxDrillLifetime: the cert-renewal drill needs a cluster whose leaves
// renew within the drill (spec.pki.leafLifetime, KUBEUP_DRILLS_LEAF_LIFETIME
// for a cluster the drills make).
const maxDrillLifetime = 2 * time.Hour

// LeafLifetime is the cluster's spec.pki.leafLifetime, from the config
// `up` rendered.
func (c *Cluster) LeafLifetime() (time.Duration, error) {
	cfg, err := config.Load(filepath.Join(cluster.Dir(c.DataDir, c.Name), "render", "cluster.yaml"))
	if err != nil {
		return 0, err
	}
	return cfg.LeafLifetime(), nil
}

// RefreshAdmin renews the host's admin certificate (which no machine
// renews) when less than a third of its lifetime is left, and reconnects
// with it: with a short leaf lifetime the drills' own client would
// otherwise expire. It says whether it renewed.
func (c *Cluster) RefreshAdmin(now time.Time) (bool, error) {
	cert, ok := c.Bundle.Certificate("admin")
	if ok && cert.NotAfter.Sub(now) > cert.NotAfter.Sub(cert.NotBefore)/3 {
		return false, nil
	}
	if _, err := cluster.RenewAdminCertificate(c.DataDir, c.Name); err != nil {
		return false, err
	}
	fresh, err := Connect(c.DataDir, c.Name, c.Key, c.Workloads)
	if err != nil {
		return false, err
	}
	c.Bundle, c.Access, c.quick = fresh.Bundle, fresh.Access, fresh.quick
	return true, nil
}

// Certificates are a machine's certificates as its agent's last scan found
// them (what `kubeup certs check` lists).
func (c *Cluster) Certificates(ctx context.Context, m cluster.MachineState) ([]agent.CertificateInfo, error) {
	st, err := c.agentStatus(ctx, m)
	if err != nil {
		return nil, err
	}
	return st.Certificates, nil
}

// certKey is one certificate file of one machine.
type certKey struct{ Machine, Path string }

func (k certKey) String() string { return k.Machine + ":" + k.Path }

// certWatch follows every leaf certificate of every machine through the
// cert-renewal drill: a leaf is renewed once its file holds a later NotAfter
// than when first seen, or, for a file expected but missing at first (the
// kubelet's -current.pem on a master appears at its first rotation), once
// it appears.
type certWatch struct {
	lifetime time.Duration
	first    map[certKey]time.Time // NotAfter when first seen
	last     map[certKey]time.Time
	appeared map[certKey]bool // expected, missing at the first look, seen since
	looked   map[string]bool  // machines looked at once
	expected []certKey
	// renewals counts the changes of NotAfter seen (a file renewed twice
	// between two looks counts once).
	renewals int
}

// newCertWatch watches leaves of about lifetime, and the expected files
// too (which may not exist yet).
func newCertWatch(lifetime time.Duration, expected []certKey) *certWatch {
	return &certWatch{lifetime: lifetime, first: map[certKey]time.Time{}, last: map[certKey]time.Time{},
		appeared: map[certKey]bool{}, looked: map[string]bool{}, expected: expected}
}

// kubeletCertificates are the files the kubelet rotates through CSRs: its
// client certificate everywhere, its serving certificate on nodes (masters
// serve kubeup's /etc/kubernetes/pki/kubelet.crt, which the agent renews).
func kubeletCertificates(machines []cluster.MachineState) []certKey {
	var out []certKey
	for _, m := range machines {
		out = append(out, certKey{m.Name, components.KubeletCertDir + "/kubelet-client-current.pem"})
		if m.Role == config.RoleNode {
			out = append(out, certKey{m.Name, components.KubeletCertDir + "/kubelet-server-current.pem"})
		}
	}
	return out
}

// observe records a look at a machine's certificates at now. Certificates
// valid much longer than the lifetime (the CAs) are not watched.
func (w *certWatch) observe(machine string, now time.Time, certs []agent.CertificateInfo) {
	firstLook := !w.looked[machine]
	w.looked[machine] = true
	seen := map[certKey]time.Time{}
	for _, c := range certs {
		k := certKey{machine, c.Path}
		if c.NotAfter.After(seen[k]) {
			seen[k] = c.NotAfter
		}
	}
	for k, notAfter := range seen {
		_, known := w.first[k]
		if !known {
			if notAfter.Sub(now) > w.lifetime+10*time.Minute {
				continue // a CA, or a certificate of another lifetime
			}
			w.first[k], w.last[k] = notAfter, notAfter
			if !firstLook && slices.Contains(w.expected, k) {
				w.appeared[k] = true
			}
			continue
		}
		if !notAfter.Equal(w.last[k]) {
			w.renewals++
			w.last[k] = notAfter
		}
	}
}

// watched is how many certificates the drill follows.
func (w *certWatch) watched() int {
	n := len(w.first)
	for _, k := range w.expected {
		if _, ok := w.first[k]; !ok {
			n++
		}
	}
	return n
}

// pending are the certificates not renewed yet, sorted; machines not
// looked at yet are pending as a whole.
func (w *certWatch) pending(machines []string) []string {
	var out []string
	for _, m := range machines {
		if !w.looked[m] {
			out = append(out, m+":*")
		}
	}
	for k, first := range w.first {
		if !w.appeared[k] && !w.last[k].After(first) {
			out = append(out, k.String())
		}
	}
	for _, k := range w.expected {
		if _, ok := w.first[k]; !ok && w.looked[k.Machine] {
			out = append(out, k.String()+" (missing)")
		}
	}
	sort.Strings(out)
	return out
}

// outage adds up the time the API did not answer: from a failed probe to
// the next good one (a drill passes only with none).
type outage struct {
	down  time.Time // first failed probe of the current outage; zero: up
	total time.Duration
	count int
}

func (o *outage) probe(at time.Time, ok bool) {
	switch {
	case !ok && o.down.IsZero():
		o.down = at
		o.count++
	case ok && !o.down.IsZero():
		o.total += at.Sub(o.down)
		o.down = time.Time{}
	}
}

// end closes an outage still open at the drill's end.
func (o *outage) end(at time.Time) time.Duration {
	o.probe(at, true)
	return o.total
}

// certRenewalDrill waits, on a cluster with a short leaf lifetime, until
// every leaf certificate of every machine has been renewed at least once
// (the agents' local re-issues and CSRs, the kubelets' rotations), probing
// /readyz every second and the web Service all along: no probe may fail.
// The host's admin certificate is renewed by the drill itself.
func certRenewalDrill(ctx context.Context, t *testing.T, c *Cluster, lifetime time.Duration, web *Service) Result {
	t.Helper()
	res := Result{Drill: "cert-renewal", Machine: "all"}
	fail := func(err error) Result {
		res.Error = err.Error()
		t.Logf("cert-renewal: %v", err)
		return res
	}
	var names []string
	for _, m := range c.State.Machines {
		names = append(names, m.Name)
	}
	// A leaf issued now is due after at most two thirds of its lifetime
	// (plus the 5 back-dated minutes); the kubelets rotate at 70-90%.
	limit := lifetime*6/5 + 10*time.Minute
	start := time.Now()
	deadline := start.Add(limit)
	w := newCertWatch(lifetime, kubeletCertificates(c.State.Machines))
	var api outage
	var firstFail time.Time
	var nextLook time.Time
	for {
		now := time.Now()
		if renewed, err := c.RefreshAdmin(now); err != nil {
			return fail(fmt.Errorf("renew the host's admin certificate: %w", err))
		} else if renewed {
			t.Logf("cert-renewal: %s: renewed the host's admin certificate", now.UTC().Format(time.TimeOnly))
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := c.APIReady(pctx)
		cancel()
		api.probe(now, err == nil)
		if err != nil {
			t.Logf("cert-renewal: %s: %v", now.UTC().Format(time.TimeOnly), err)
			if firstFail.IsZero() {
				firstFail = now
			}
		}
		if !now.Before(nextLook) {
			nextLook = now.Add(20 * time.Second)
			for _, m := range c.State.Machines {
				certs, err := c.Certificates(ctx, m)
				if err != nil {
					t.Logf("cert-renewal: %s's certificates: %v", m.Name, err)
					continue
				}
				w.observe(m.Name, now, certs)
			}
			if len(w.pending(names)) == 0 {
				break
			}
		}
		if now.After(deadline) {
			res.Data = fmt.Sprintf("%d renewals seen", w.renewals)
			return fail(fmt.Errorf("after %s, not renewed: %s", limit, strings.Join(w.pending(names), ", ")))
		}
		select {
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(time.Second):
		}
	}
	end := time.Now()
	res.Healthy, res.Outage, res.Renewals = secondsOf(end.Sub(start)), secondsOf(api.end(end)), w.renewals
	res.Data = fmt.Sprintf("%d certificates on %d machines renewed (%d renewals), API outage %s", w.watched(), len(names), w.renewals, api.total.Round(time.Second))
	ok, failed, err := web.Answers(ctx, c.Access.Clientset, start, end)
	if err != nil {
		return fail(fmt.Errorf("the prober's log: %w", err))
	}
	res.Data += fmt.Sprintf(", service %d/%d", ok, ok+failed)
	if !firstFail.IsZero() {
		// What the masters did around the first failed probe.
		for _, m := range c.State.Machines {
			if m.Role != config.RoleMaster {
				continue
			}
			j, err := c.JournalAround(ctx, m, firstFail, 20*time.Second, 10*time.Second)
			if err != nil {
				j = err.Error()
			}
			t.Logf("cert-renewal: %s's journal around the first failed /readyz (%s):\n%s", m.Name, firstFail.UTC().Format(time.TimeOnly), j)
		}
	}
	switch {
	case api.count > 0:
		return fail(fmt.Errorf("/readyz failed %d times, %s in all", api.count, api.total.Round(time.Second)))
	case failed > 0 || ok == 0:
		return fail(fmt.Errorf("the Service failed %d of %d tries", failed, ok+failed))
	}
	if err := c.Healthy(ctx); err != nil {
		return fail(fmt.Errorf("after the renewals: %w", err))
	}
	res.Pass = true
	t.Logf("cert-renewal: %s in %s", res.Data, res.Healthy)
	return res
}
