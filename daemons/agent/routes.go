package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes the agent programs (rtm_protocol, the
// "proto" column of `ip route`), so it finds and deletes its own routes, and
// only those. 77 is in no registry of iproute2's rt_protos (which lists
// kernel 2, boot 3, static 4, the routing daemons 8-192); `ip route show
// proto 77` lists kubeup's routes.
const RouteProtocol = 77

// Route sends a pod CIDR to the machine that hosts it.
type Route struct {
	Dst netip.Prefix `json:"dst"`
	Via netip.Addr   `json:"via"`
	// Node is the Node the route is for (informational, not in the kernel).
	Node string `json:"node,omitempty"`
}

func (r Route) String() string { return r.Dst.String() + " via " + r.Via.String() }

// RouteTable is the kernel routing table as far as the agent's routes go.
type RouteTable interface {
	// List returns the routes marked with RouteProtocol.
	List() ([]Route, error)
	// Replace adds the route, or changes the existing one to the same
	// destination (`ip route replace`).
	Replace(Route) error
	Delete(Route) error
}

// PlanRoutes compares the routes the cluster needs with the agent's routes
// in the kernel: replace are missing or wrong ones, remove are the agent's
// routes to destinations no Node has any more.
func PlanRoutes(desired, current []Route) (replace, remove []Route) {
	have := map[netip.Prefix]netip.Addr{}
	for _, r := range current {
		have[r.Dst] = r.Via
	}
	want := map[netip.Prefix]bool{}
	for _, r := range desired {
		want[r.Dst] = true
		if via, ok := have[r.Dst]; !ok || via != r.Via {
			replace = append(replace, r)
		}
	}
	for _, r := range current {
		if !want[r.Dst] {
			remove = append(remove, r)
		}
	}
	sortRoutes(replace)
	sortRoutes(remove)
	return replace, remove
}

func sortRoutes(rs []Route) {
	slices.SortFunc(rs, func(a, b Route) int {
		if c := a.Dst.Addr().Compare(b.Dst.Addr()); c != 0 {
			return c
		}
		return a.Dst.Bits() - b.Dst.Bits()
	})
}

// RouteChanges are what ApplyRoutes did.
type RouteChanges struct {
	Replaced, Removed []Route
}

// ApplyRoutes makes the table match desired and returns the desired routes
// now in place and what changed; it keeps going past single failures and
// returns them joined.
func ApplyRoutes(t RouteTable, desired []Route) ([]Route, RouteChanges, error) {
	var ch RouteChanges
	current, err := t.List()
	if err != nil {
		return nil, ch, fmt.Errorf("list routes: %w", err)
	}
	replace, remove := PlanRoutes(desired, current)
	var errs []error
	failed := map[netip.Prefix]bool{}
	for _, r := range remove {
		if err := t.Delete(r); err != nil {
			errs = append(errs, fmt.Errorf("delete route %s: %w", r, err))
			continue
		}
		ch.Removed = append(ch.Removed, r)
	}
	for _, r := range replace {
		if err := t.Replace(r); err != nil {
			failed[r.Dst] = true
			errs = append(errs, fmt.Errorf("route %s (node %s): %w", r, r.Node, err))
			continue
		}
		ch.Replaced = append(ch.Replaced, r)
	}
	var programmed []Route
	for _, r := range desired {
		if !failed[r.Dst] {
			programmed = append(programmed, r)
		}
	}
	sortRoutes(programmed)
	return programmed, ch, errors.Join(errs...)
}

// netlinkRoutes is RouteTable on the kernel's main table via netlink.
type netlinkRoutes struct {
	h *netlink.Handle
}

// newNetlinkRoutes works in the current network namespace when h is nil.
func newNetlinkRoutes(h *netlink.Handle) *netlinkRoutes {
	if h == nil {
		h = &netlink.Handle{}
	}
	return &netlinkRoutes{h: h}
}

func (n *netlinkRoutes) List() ([]Route, error) {
	var out []Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := n.h.RouteListFiltered(family,
			&netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
			netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
		if err != nil {
			return nil, err
		}
		for _, r := range rs {
			if r.Dst == nil || r.Gw == nil {
				continue
			}
			dst, ok1 := prefixFromIPNet(r.Dst)
			via, ok2 := netip.AddrFromSlice(r.Gw)
			if ok1 && ok2 {
				out = append(out, Route{Dst: dst, Via: via.Unmap()})
			}
		}
	}
	return out, nil
}

func (n *netlinkRoutes) Replace(r Route) error {
	return n.h.RouteReplace(toNetlink(r))
}

func (n *netlinkRoutes) Delete(r Route) error {
	return n.h.RouteDel(toNetlink(r))
}

func toNetlink(r Route) *netlink.Route {
	return &netlink.Route{
		Dst:      &net.IPNet{IP: r.Dst.Addr().AsSlice(), Mask: net.CIDRMask(r.Dst.Bits(), r.Dst.Addr().BitLen())},
		Gw:       r.Via.AsSlice(),
		Protocol: RouteProtocol,
		Table:    unix.RT_TABLE_MAIN,
	}
}

func prefixFromIPNet(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones), true
}
