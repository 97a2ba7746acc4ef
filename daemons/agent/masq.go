package agent

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// MasqueradeChain holds the agent's one NAT rule; POSTROUTING jumps to it.
const MasqueradeChain = "KUBEUP-MASQ"

// Masquerader keeps pod traffic that leaves the cluster's pod network
// source-NATed to the machine's address.
type Masquerader interface {
	EnsureMasquerade(clusterPodCIDR netip.Prefix) error
}

// iptablesMasq is Masquerader with iptables (on Debian the nft backend):
//
//	-A POSTROUTING -m comment --comment "kubeup pod masquerade" -j KUBEUP-MASQ
//	-A KUBEUP-MASQ -s <cluster pod CIDR> ! -d <cluster pod CIDR> -j MASQUERADE
//
// Idempotent: the chain is rewritten only when it holds anything else.
type iptablesMasq struct {
	newIPT func(netip.Prefix) (iptablesRunner, error)

	mu  sync.Mutex
	ipt iptablesRunner
}

// iptablesRunner is the part of go-iptables the agent uses.
type iptablesRunner interface {
	ChainExists(table, chain string) (bool, error)
	NewChain(table, chain string) error
	ClearChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Exists(table, chain string, rulespec ...string) (bool, error)
	Append(table, chain string, rulespec ...string) error
	AppendUnique(table, chain string, rulespec ...string) error
}

func newIPTablesMasq() *iptablesMasq {
	return &iptablesMasq{newIPT: func(p netip.Prefix) (iptablesRunner, error) {
		proto := iptables.ProtocolIPv4
		if p.Addr().Is6() {
			proto = iptables.ProtocolIPv6
		}
		return iptables.New(iptables.IPFamily(proto), iptables.Timeout(5))
	}}
}

func masqueradeRule(cidr netip.Prefix) []string {
	c := cidr.Masked().String()
	return []string{"-s", c, "!", "-d", c, "-j", "MASQUERADE"}
}

var masqueradeJump = []string{"-m", "comment", "--comment", "kubeup pod masquerade", "-j", MasqueradeChain}

func (m *iptablesMasq) EnsureMasquerade(cidr netip.Prefix) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ipt == nil {
		ipt, err := m.newIPT(cidr)
		if err != nil {
			return fmt.Errorf("iptables: %w", err)
		}
		m.ipt = ipt
	}
	if err := ensureMasquerade(m.ipt, cidr); err != nil {
		return fmt.Errorf("masquerade %s: %w", cidr, err)
	}
	return nil
}

func ensureMasquerade(ipt iptablesRunner, cidr netip.Prefix) error {
	const table = "nat"
	exists, err := ipt.ChainExists(table, MasqueradeChain)
	if err != nil {
		return err
	}
	if !exists {
		if err := ipt.NewChain(table, MasqueradeChain); err != nil {
			return err
		}
	}
	rule := masqueradeRule(cidr)
	ok, err := ipt.Exists(table, MasqueradeChain, rule...)
	if err != nil {
		return err
	}
	if ok {
		// The rule is there; anything else in the chain (an old cluster
		// CIDR) must go too.
		rules, err := ipt.List(table, MasqueradeChain)
		if err != nil {
			return err
		}
		n := 0
		for _, r := range rules {
			if strings.HasPrefix(r, "-A ") {
				n++
			}
		}
		ok = n == 1
	}
	if !ok {
		if err := ipt.ClearChain(table, MasqueradeChain); err != nil {
			return err
		}
		if err := ipt.Append(table, MasqueradeChain, rule...); err != nil {
			return err
		}
	}
	return ipt.AppendUnique(table, "POSTROUTING", masqueradeJump...)
}
