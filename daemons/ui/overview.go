package ui

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/duration"

	"kubeup.dev/kubeup/components"
)

// Overview is what the page shows, and what /api/overview returns.
type Overview struct {
	GeneratedAt time.Time `json:"generatedAt"`
	// Synced is false until the informers hold a first complete list; the
	// lists are partial meanwhile.
	Synced bool   `json:"synced"`
	Nodes  []Node `json:"nodes"`
	// ControlPlane is who leads the controller manager and the scheduler.
	ControlPlane []Leader  `json:"controlPlane"`
	Machines     []Machine `json:"machines"`
	// MetricsError says why Machines carry no unit states (Prometheus not
	// configured or unreachable); empty when they do.
	MetricsError string  `json:"metricsError,omitempty"`
	Pods         []Pod   `json:"pods"`
	Events       []Event `json:"events"`
}

// Node is one row of the node table.
type Node struct {
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Ready is the Ready condition's status: True, False or Unknown.
	Ready          string    `json:"ready"`
	ReadyMessage   string    `json:"readyMessage,omitempty"`
	Unschedulable  bool      `json:"unschedulable,omitempty"`
	InternalIP     string    `json:"internalIP"`
	KubeletVersion string    `json:"kubeletVersion"`
	PodCIDR        string    `json:"podCIDR"`
	Created        time.Time `json:"created"`
	Age            string    `json:"age"`
}

// Leader is one row of the control plane table: the holder of a leader
// election Lease.
type Leader struct {
	// Component is the Lease's name, the component's.
	Component string `json:"component"`
	// Holder is the leading machine, from the holder identity
	// ("master-0_<uuid>"); empty when no one holds the Lease.
	Holder   string `json:"holder"`
	Identity string `json:"identity,omitempty"`
	// Renewed is the leader's last renewal.
	Renewed time.Time `json:"renewed,omitzero"`
	Age     string    `json:"age"`
	// OK: held, and renewed within the Lease's duration. A leader that
	// stops renewing is gone, and no other has taken over yet.
	OK bool `json:"ok"`
	// Problem says why not OK.
	Problem string `json:"problem,omitempty"`
}

// LeaderNamespace and LeaderLeases are the leader election Leases the
// control plane table shows, in its order.
const LeaderNamespace = "kube-system"

var LeaderLeases = []string{"kube-controller-manager", "kube-scheduler"}

// LeaderRows turns the Leases in LeaderNamespace into the control plane
// table: a row for each of LeaderLeases, held or not.
func LeaderRows(leases []*coordinationv1.Lease, now time.Time) []Leader {
	out := make([]Leader, 0, len(LeaderLeases))
	for _, name := range LeaderLeases {
		row := Leader{Component: name, Age: "?", Problem: "no Lease: not elected yet"}
		i := slices.IndexFunc(leases, func(l *coordinationv1.Lease) bool {
			return l.Namespace == LeaderNamespace && l.Name == name
		})
		if i < 0 {
			out = append(out, row)
			continue
		}
		spec := leases[i].Spec
		if spec.HolderIdentity != nil {
			row.Identity = *spec.HolderIdentity
			row.Holder = leaseHolder(row.Identity)
		}
		if spec.RenewTime != nil {
			row.Renewed = spec.RenewTime.Time
			row.Age = age(now, row.Renewed)
		}
		switch {
		case row.Holder == "":
			row.Problem = "not held: released, or no leader elected"
		case spec.RenewTime == nil:
			row.Problem = "never renewed"
		case spec.LeaseDurationSeconds != nil &&
			now.After(row.Renewed.Add(time.Duration(*spec.LeaseDurationSeconds)*time.Second)):
			row.Problem = "expired: the leader stopped renewing"
		default:
			row.OK, row.Problem = true, ""
		}
		out = append(out, row)
	}
	return out
}

// leaseHolder is the machine in a leader election identity: client-go's
// is "<hostname>_<uuid>"; any other is shown whole.
func leaseHolder(identity string) string {
	if i := strings.LastIndexByte(identity, '_'); i > 0 {
		return identity[:i]
	}
	return identity
}

// Pod is one row of the pod table.
type Pod struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	// Ready is "ready/total" containers; OK says the pod needs no attention
	// (Ready, or Succeeded).
	Ready    string    `json:"ready"`
	OK       bool      `json:"ok"`
	Phase    string    `json:"phase"`
	Reason   string    `json:"reason,omitempty"`
	Restarts int32     `json:"restarts"`
	Node     string    `json:"node"`
	Created  time.Time `json:"created"`
	Age      string    `json:"age"`
}

// Event is one row of the event table.
type Event struct {
	Time      time.Time `json:"time"`
	Age       string    `json:"age"`
	Namespace string    `json:"namespace"`
	Type      string    `json:"type"`
	Reason    string    `json:"reason"`
	Object    string    `json:"object"`
	Message   string    `json:"message"`
	Count     int32     `json:"count"`
}

// Warning says whether the event is a Warning (highlighted on the page).
func (e Event) Warning() bool { return e.Type == corev1.EventTypeWarning }

// MaxEvents is how many events the overview keeps, newest first.
const MaxEvents = 50

const nodeRolePrefix = "node-role.kubernetes.io/"

// NodeRows turns Nodes into rows sorted by name.
func NodeRows(nodes []*corev1.Node, now time.Time) []Node {
	out := make([]Node, 0, len(nodes))
	for _, n := range nodes {
		row := Node{
			Name: n.Name, Roles: nodeRoles(n), Ready: string(corev1.ConditionUnknown),
			Unschedulable: n.Spec.Unschedulable, KubeletVersion: n.Status.NodeInfo.KubeletVersion,
			PodCIDR: strings.Join(n.Spec.PodCIDRs, ","), Created: n.CreationTimestamp.Time,
			Age: age(now, n.CreationTimestamp.Time),
		}
		if row.PodCIDR == "" {
			row.PodCIDR = n.Spec.PodCIDR
		}
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				row.Ready = string(c.Status)
				if c.Status != corev1.ConditionTrue {
					row.ReadyMessage = c.Message
				}
			}
		}
		for _, a := range n.Status.Addresses {
			if a.Type == corev1.NodeInternalIP && row.InternalIP == "" {
				row.InternalIP = a.Address
			}
		}
		out = append(out, row)
	}
	slices.SortFunc(out, func(a, b Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// nodeRoles are the node-role.kubernetes.io/* labels, as kubectl shows
// them, or kubeup's own role label before the addon manager translated it.
func nodeRoles(n *corev1.Node) []string {
	var roles []string
	for k, v := range n.Labels {
		if r, ok := strings.CutPrefix(k, nodeRolePrefix); ok && r != "" {
			roles = append(roles, r)
		} else if k == nodeRolePrefix[:len(nodeRolePrefix)-1] && v != "" {
			roles = append(roles, v) // kubernetes.io/role-style value
		}
	}
	if len(roles) == 0 {
		if r := n.Labels[components.RoleLabel]; r != "" {
			roles = append(roles, r)
		}
	}
	slices.Sort(roles)
	if roles == nil {
		roles = []string{} // [] in JSON, not null
	}
	return roles
}

// PodRows turns Pods into rows: pods needing attention first, then by
// namespace and name.
func PodRows(pods []*corev1.Pod, now time.Time) []Pod {
	out := make([]Pod, 0, len(pods))
	for _, p := range pods {
		ready := 0
		var restarts int32
		for _, s := range p.Status.ContainerStatuses {
			if s.Ready {
				ready++
			}
			restarts += s.RestartCount
		}
		row := Pod{
			Namespace: p.Namespace, Name: p.Name, Phase: string(p.Status.Phase), Reason: podReason(p),
			Ready:    formatRatio(ready, len(p.Spec.Containers)),
			OK:       p.DeletionTimestamp == nil && (p.Status.Phase == corev1.PodSucceeded || podReady(p)),
			Restarts: restarts, Node: p.Spec.NodeName, Created: p.CreationTimestamp.Time,
			Age: age(now, p.CreationTimestamp.Time),
		}
		out = append(out, row)
	}
	slices.SortFunc(out, func(a, b Pod) int {
		if a.OK != b.OK {
			if !a.OK {
				return -1
			}
			return 1
		}
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	return out
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// podReason is the most telling reason a pod is not simply running, as
// kubectl's STATUS column shows it: Terminating, the pod's own reason
// (Evicted), or the first waiting or failed container's reason
// (CrashLoopBackOff, ImagePullBackOff, Error).
func podReason(p *corev1.Pod) string {
	if p.DeletionTimestamp != nil {
		return "Terminating"
	}
	if p.Status.Reason != "" {
		return p.Status.Reason
	}
	for _, list := range [][]corev1.ContainerStatus{p.Status.InitContainerStatuses, p.Status.ContainerStatuses} {
		for _, s := range list {
			if w := s.State.Waiting; w != nil && w.Reason != "" {
				return w.Reason
			}
			if t := s.State.Terminated; t != nil && t.ExitCode != 0 && t.Reason != "" {
				return t.Reason
			}
		}
	}
	return ""
}

// EventRows turns Events into rows, newest first, at most MaxEvents.
func EventRows(events []*corev1.Event, now time.Time) []Event {
	out := make([]Event, 0, len(events))
	for _, e := range events {
		t := eventTime(e)
		out = append(out, Event{
			Time: t, Age: age(now, t), Namespace: e.Namespace, Type: e.Type, Reason: e.Reason,
			Object:  strings.TrimSuffix(e.InvolvedObject.Kind+"/"+e.InvolvedObject.Name, "/"),
			Message: strings.TrimSpace(e.Message), Count: eventCount(e),
		})
	}
	slices.SortStableFunc(out, func(a, b Event) int {
		return cmp.Or(b.Time.Compare(a.Time), strings.Compare(a.Namespace, b.Namespace),
			strings.Compare(a.Object, b.Object), strings.Compare(a.Reason, b.Reason))
	})
	if len(out) > MaxEvents {
		out = out[:MaxEvents]
	}
	return out
}

// eventTime is when the event last happened: core/v1 events written by
// old clients set LastTimestamp, events.k8s.io/v1 clients set EventTime
// (and Series for repeats).
func eventTime(e *corev1.Event) time.Time {
	switch {
	case e.Series != nil && !e.Series.LastObservedTime.IsZero():
		return e.Series.LastObservedTime.Time
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	case !e.FirstTimestamp.IsZero():
		return e.FirstTimestamp.Time
	}
	return e.CreationTimestamp.Time
}

func eventCount(e *corev1.Event) int32 {
	if e.Series != nil && e.Series.Count > 0 {
		return e.Series.Count
	}
	return max(e.Count, 1)
}

func age(now, t time.Time) string {
	if t.IsZero() {
		return "?"
	}
	return duration.HumanDuration(now.Sub(t))
}

func formatRatio(a, b int) string { return strconv.Itoa(a) + "/" + strconv.Itoa(b) }
