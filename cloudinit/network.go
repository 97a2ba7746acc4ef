package cloudinit

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
)

// NetworkConfig is a cloud-init network-config, version 2 (the netplan-like format). It is rendered without a
// top-level "network:" key: cloud-init 22.4's NoCloud reads the network-config file as the version 2 document
// itself, and later releases accept both forms.
type NetworkConfig struct {
	// Ethernets are keyed by an id. The id is the interface name unless Match selects the device, in which case
	// SetName (if given) renames it.
	Ethernets map[string]Ethernet
}

// Ethernet configures one physical interface.
type Ethernet struct {
	Match          *Match
	SetName        string
	DHCP4          bool
	DHCP4Overrides *DHCPOverrides
	// Addresses are static addresses in CIDR form, e.g. "10.0.0.5/24".
	Addresses   []string
	Routes      []Route
	Nameservers *Nameservers
}

// Match selects a device.
type Match struct {
	MACAddress string
}

// DHCPOverrides adjusts what is taken from DHCP. Nil fields keep the renderer's defaults (true).
type DHCPOverrides struct {
	UseRoutes *bool
	UseDNS    *bool
	// RouteMetric is the metric of DHCP routes; zero leaves it out.
	RouteMetric int
}

// Route is a static route.
type Route struct {
	// To is a CIDR prefix, or "default", which is rendered as 0.0.0.0/0 because cloud-init 22.4 rejects the word
	// ("Address default is not a valid ip address"). IPv6 default routes are refused: 22.4 turns ::/0 into ::/64.
	To  string
	Via string
	// Metric; zero leaves it out. cloud-init 22.4 ignores metrics of version 2 routes; later releases apply them.
	Metric int
}

// Nameservers sets DNS servers and search domains.
type Nameservers struct {
	Addresses []string
	Search    []string
}

type networkWire struct {
	Version   int                     `yaml:"version"`
	Ethernets map[string]ethernetWire `yaml:"ethernets,omitempty"`
}

type ethernetWire struct {
	Match          *matchWire         `yaml:"match,omitempty"`
	SetName        string             `yaml:"set-name,omitempty"`
	DHCP4          bool               `yaml:"dhcp4"`
	DHCP4Overrides *dhcpOverridesWire `yaml:"dhcp4-overrides,omitempty"`
	Addresses      []string           `yaml:"addresses,omitempty"`
	Routes         []routeWire        `yaml:"routes,omitempty"`
	Nameservers    *nameserversWire   `yaml:"nameservers,omitempty"`
}

type matchWire struct {
	MACAddress string `yaml:"macaddress,omitempty"`
}

type dhcpOverridesWire struct {
	UseRoutes   *bool `yaml:"use-routes,omitempty"`
	UseDNS      *bool `yaml:"use-dns,omitempty"`
	RouteMetric int   `yaml:"route-metric,omitempty"`
}

type routeWire struct {
	To     string `yaml:"to"`
	Via    string `yaml:"via"`
	Metric int    `yaml:"metric,omitempty"`
}

type nameserversWire struct {
	Addresses []string `yaml:"addresses,omitempty"`
	Search    []string `yaml:"search,omitempty"`
}

// Render validates n and returns the network-config document (YAML, version 2). Map keys are sorted, so the
// output depends only on n.
func (n *NetworkConfig) Render() ([]byte, error) {
	w := networkWire{Version: 2, Ethernets: map[string]ethernetWire{}}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	ids := make([]string, 0, len(n.Ethernets))
	for id := range n.Ethernets {
		ids = append(ids, id)
	}
	sort.Strings(ids) // errors in a stable order
	for _, id := range ids {
		e := n.Ethernets[id]
		field := "ethernets." + id
		if id == "" {
			bad("ethernets", "empty interface id")
		}
		ew := ethernetWire{SetName: e.SetName, DHCP4: e.DHCP4, Addresses: e.Addresses}
		if e.Match != nil {
			if _, err := net.ParseMAC(e.Match.MACAddress); err != nil {
				bad(field+".match.macaddress", "%v", err)
			}
			ew.Match = &matchWire{MACAddress: e.Match.MACAddress}
		}
		if e.SetName != "" && e.Match == nil {
			bad(field+".set-name", "requires match")
		}
		if o := e.DHCP4Overrides; o != nil {
			if !e.DHCP4 {
				bad(field+".dhcp4-overrides", "requires dhcp4")
			}
			if o.RouteMetric < 0 {
				bad(field+".dhcp4-overrides.route-metric", "must not be negative")
			}
			ew.DHCP4Overrides = &dhcpOverridesWire{UseRoutes: o.UseRoutes, UseDNS: o.UseDNS, RouteMetric: o.RouteMetric}
		}
		for i, a := range e.Addresses {
			if _, err := netip.ParsePrefix(a); err != nil {
				bad(fmt.Sprintf("%s.addresses[%d]", field, i), "%v", err)
			}
		}
		for i, r := range e.Routes {
			rf := fmt.Sprintf("%s.routes[%d]", field, i)
			via, err := netip.ParseAddr(r.Via)
			if err != nil {
				bad(rf+".via", "%v", err)
			}
			to := r.To
			if to == "default" {
				to = "0.0.0.0/0"
				if via.Is6() {
					to = "::/0"
				}
			}
			if p, err := netip.ParsePrefix(to); err != nil {
				bad(rf+".to", "%v", err)
			} else if via.IsValid() && p.Addr().Is4() != via.Is4() {
				bad(rf, "to %s and via %s are different address families", to, r.Via)
			} else if p.Addr().Is6() && p.Bits() == 0 {
				// cloud-init 22.4 drops the zero prefix length and installs ::/64 instead.
				bad(rf+".to", "IPv6 default routes are not supported: cloud-init 22.4 renders ::/0 as ::/64")
			}
			if r.Metric < 0 {
				bad(rf+".metric", "must not be negative")
			}
			ew.Routes = append(ew.Routes, routeWire{To: to, Via: r.Via, Metric: r.Metric})
		}
		if ns := e.Nameservers; ns != nil {
			for i, a := range ns.Addresses {
				if _, err := netip.ParseAddr(a); err != nil {
					bad(fmt.Sprintf("%s.nameservers.addresses[%d]", field, i), "%v", err)
				}
			}
			ew.Nameservers = &nameserversWire{Addresses: ns.Addresses, Search: ns.Search}
		}
		w.Ethernets[id] = ew
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("render network-config: %w", err)
	}
	out, err := marshalYAML(w)
	if err != nil {
		return nil, fmt.Errorf("render network-config: %w", err)
	}
	return out, nil
}
