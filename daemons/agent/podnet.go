package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/tools/cache"
)

// Pod network timing: a full reconcile at least every podNetResync (routes
// someone deleted come back), the masquerade rule re-checked at most every
// masqRecheck (each check runs iptables), and a pass older than
// podNetStuckAfter makes the agent unhealthy.
const (
	podNetResync     = 30 * time.Second
	masqRecheck      = time.Minute
	podNetStuckAfter = 5 * time.Minute
)

// PodNetworkStatus is the pod network as the agent last programmed it.
type PodNetworkStatus struct {
	// PodCIDR is this machine's Node's spec.podCIDR, once allocated.
	PodCIDR string `json:"podCIDR,omitempty"`
	// CNIConfig is the conflist path, once written.
	CNIConfig string `json:"cniConfig,omitempty"`
	// Routes are the routes to other machines' pod CIDRs in place.
	Routes     []Route   `json:"routes"`
	Masquerade bool      `json:"masquerade"`
	Ready      bool      `json:"ready"`
	LastSync   time.Time `json:"lastSync,omitzero"`
	Error      string    `json:"error,omitempty"`
}

// podNetwork is the task that programs the machine's pod network from the
// cluster's Nodes (the design of flannel's host-gw or kindnet): a bridge CNI
// config with this Node's pod CIDR, a route to every other Node's pod CIDR
// via its InternalIP, and one masquerade rule for traffic leaving the pod
// network.
type podNetwork struct {
	machine     string
	clusterCIDR netip.Prefix
	cniDir      string
	kube        *kubeClient
	routes      RouteTable
	masq        Masquerader
	log         *slog.Logger
	now         func() time.Time

	mu       sync.Mutex
	status   PodNetworkStatus
	synced   bool
	lastPass time.Time
	masqAt   time.Time
	lastErr  string
}

func (p *podNetwork) Name() string { return "pod-network" }

func (p *podNetwork) Run(ctx context.Context) error {
	if _, ok := p.kube.Get(); !ok {
		p.mu.Lock()
		p.status.Error = "waiting for the kubeconfig"
		p.mu.Unlock()
	}
	client, err := p.kube.Wait(ctx)
	if err != nil {
		return nil // shutting down
	}
	p.mu.Lock()
	if p.lastPass.IsZero() {
		p.status.Error = "waiting for the list of Nodes from the API server"
	}
	p.mu.Unlock()
	nodes := cache.NewSharedIndexInformer(client.NodeListWatch(), &kubeNode{}, 0, cache.Indexers{})
	if err := nodes.SetTransform(trimNode); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	var informer sync.WaitGroup
	defer informer.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // before the Wait: it stops the informer

	poke := make(chan struct{}, 1)
	kick := func() {
		select {
		case poke <- struct{}{}:
		default:
		}
	}
	if _, err := nodes.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { kick() },
		UpdateFunc: func(_, _ any) { kick() },
		DeleteFunc: func(any) { kick() },
	}); err != nil {
		return fmt.Errorf("watch nodes: %w", err)
	}
	informer.Go(func() { nodes.RunWithContext(ctx) })
	if !cache.WaitForCacheSync(ctx.Done(), nodes.HasSynced) {
		return nil
	}
	p.mu.Lock()
	p.synced = true
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		p.synced = false
		p.mu.Unlock()
	}()

	tick := time.NewTicker(podNetResync)
	defer tick.Stop()
	for {
		var list []*kubeNode
		for _, obj := range nodes.GetStore().List() {
			if n, ok := obj.(*kubeNode); ok {
				list = append(list, n)
			}
		}
		p.reconcile(list)
		select {
		case <-ctx.Done():
			return nil
		case <-poke:
		case <-tick.C:
		}
	}
}

// trimNode drops what the controller never reads from cached Nodes (of what
// kubeNode decodes, managed fields and annotations are most of its size).
func trimNode(obj any) (any, error) {
	if n, ok := obj.(*kubeNode); ok {
		n.ManagedFields = nil
		n.Annotations = nil
	}
	return obj, nil
}

// NodeNetwork is what the pod network needs of a Node.
type NodeNetwork struct {
	Name       string
	PodCIDRs   []netip.Prefix
	InternalIP []netip.Addr
}

func nodeNetwork(n *kubeNode) NodeNetwork {
	nn := NodeNetwork{Name: n.Name}
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			nn.PodCIDRs = append(nn.PodCIDRs, p.Masked())
		}
	}
	for _, a := range n.Status.Addresses {
		if a.Type != nodeInternalIP {
			continue
		}
		if ip, err := netip.ParseAddr(a.Address); err == nil {
			nn.InternalIP = append(nn.InternalIP, ip)
		}
	}
	return nn
}

// DesiredRoutes computes this machine's pod CIDR (the first of its Node's,
// invalid when not allocated yet) and a route to every other Node's pod
// CIDRs through its InternalIP of the same family. CIDRs outside the
// cluster's pod network are refused, so a Node object cannot steer the
// machine's other traffic.
func DesiredRoutes(machine string, clusterCIDR netip.Prefix, nodes []NodeNetwork) (own netip.Prefix, routes []Route, problems []string) {
	for _, n := range nodes {
		if n.Name == machine {
			if len(n.PodCIDRs) > 0 {
				own = n.PodCIDRs[0]
			}
			continue
		}
		for _, cidr := range n.PodCIDRs {
			if !clusterCIDR.Contains(cidr.Addr()) || cidr.Bits() < clusterCIDR.Bits() {
				problems = append(problems, fmt.Sprintf("node %s: pod CIDR %s is outside the cluster's %s", n.Name, cidr, clusterCIDR))
				continue
			}
			i := slices.IndexFunc(n.InternalIP, func(a netip.Addr) bool { return a.Is4() == cidr.Addr().Is4() })
			if i < 0 {
				problems = append(problems, fmt.Sprintf("node %s: no InternalIP for pod CIDR %s", n.Name, cidr))
				continue
			}
			routes = append(routes, Route{Dst: cidr, Via: n.InternalIP[i], Node: n.Name})
		}
	}
	sortRoutes(routes)
	return own, routes, problems
}

// reconcile programs the machine from a list of Nodes and records the result.
func (p *podNetwork) reconcile(list []*kubeNode) {
	nodes := make([]NodeNetwork, len(list))
	for i, n := range list {
		nodes[i] = nodeNetwork(n)
	}
	slices.SortFunc(nodes, func(a, b NodeNetwork) int { return strings.Compare(a.Name, b.Name) })
	own, desired, problems := DesiredRoutes(p.machine, p.clusterCIDR, nodes)
	now := p.now()
	st := PodNetworkStatus{LastSync: now}
	var errs []error
	for _, pr := range problems {
		errs = append(errs, errors.New(pr))
	}

	if own.IsValid() {
		st.PodCIDR = own.String()
		path := filepath.Join(p.cniDir, CNIConfFile)
		data, err := CNIConfig(own)
		if err == nil {
			var wrote bool
			if wrote, err = writeFileIfChanged(path, data, CNIConfigMode); wrote {
				p.log.Info("wrote CNI config", "path", path, "podCIDR", own)
			}
		}
		if err != nil {
			errs = append(errs, err)
		} else {
			st.CNIConfig = path
		}
	}

	programmed, changes, err := ApplyRoutes(p.routes, desired)
	for _, r := range changes.Replaced {
		p.log.Info("route programmed", "dst", r.Dst, "via", r.Via, "node", r.Node)
	}
	for _, r := range changes.Removed {
		p.log.Info("route removed", "dst", r.Dst, "via", r.Via)
	}
	if err != nil {
		errs = append(errs, err)
	}
	st.Routes = programmed
	if st.Routes == nil {
		st.Routes = []Route{}
	}

	p.mu.Lock()
	masqDue := now.Sub(p.masqAt) >= masqRecheck || !p.status.Masquerade
	p.mu.Unlock()
	st.Masquerade = true
	if masqDue {
		if err := p.masq.EnsureMasquerade(p.clusterCIDR); err != nil {
			st.Masquerade = false
			errs = append(errs, err)
		}
	}

	joined := errors.Join(errs...)
	st.Ready = own.IsValid() && joined == nil
	switch {
	case joined != nil:
		st.Error = joined.Error()
	case !own.IsValid():
		st.Error = fmt.Sprintf("waiting for Node %s to get spec.podCIDR", p.machine)
	}

	p.mu.Lock()
	if masqDue && st.Masquerade {
		p.masqAt = now
	}
	changed := st.Error != p.lastErr
	p.lastErr = st.Error
	p.status = st
	p.lastPass = now
	p.mu.Unlock()
	// Logged outside the lock: a log write blocks while journald is slow to
	// read (a starved master), and Healthy, the watchdog's check, takes the
	// lock; a blocked write under it once cost the agent its watchdog.
	if changed {
		if st.Error != "" {
			p.log.Warn("pod network not ready", "reason", st.Error)
		} else {
			p.log.Info("pod network ready", "podCIDR", st.PodCIDR, "routes", len(st.Routes))
		}
	}
}

// Status returns the last reconcile's outcome.
func (p *podNetwork) Status() PodNetworkStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := p.status
	st.Routes = slices.Clone(st.Routes)
	if st.Routes == nil {
		st.Routes = []Route{}
	}
	return st
}

// Healthy fails when the reconcile loop has stopped turning while synced:
// the loop is wedged (a hung netlink or iptables call), not merely waiting
// for the API server.
func (p *podNetwork) Healthy() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.synced && !p.lastPass.IsZero() && p.now().Sub(p.lastPass) > podNetStuckAfter {
		return fmt.Errorf("pod-network: no reconcile for %s", p.now().Sub(p.lastPass).Round(time.Second))
	}
	return nil
}

var (
	podNetRoutesDesc = prometheus.NewDesc("kubeup_pod_network_routes",
		"Routes to other machines' pod CIDRs the agent has programmed.", nil, nil)
	podNetReadyDesc = prometheus.NewDesc("kubeup_pod_network_ready",
		"1 when the CNI config is written and every route and the masquerade rule are in place.", nil, nil)
)

func (p *podNetwork) Describe(ch chan<- *prometheus.Desc) {
	ch <- podNetRoutesDesc
	ch <- podNetReadyDesc
}

func (p *podNetwork) Collect(ch chan<- prometheus.Metric) {
	st := p.Status()
	ch <- prometheus.MustNewConstMetric(podNetRoutesDesc, prometheus.GaugeValue, float64(len(st.Routes)))
	ch <- prometheus.MustNewConstMetric(podNetReadyDesc, prometheus.GaugeValue, boolValue(st.Ready))
}
