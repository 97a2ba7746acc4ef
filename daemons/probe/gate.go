package probe

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Gate refuses new TCP connections to a local port with a TCP reset (as
// if nothing listened, so clients keep their own back-off), from every
// source but Allow, while a unit starts: the API server's ExecStartPre
// closes it and its ExecStartPost opens it once /readyz answers on ::1
// (components.apiServerGate says why).
//
// It is an nftables table of its own, inet family, programmed over
// netlink in one transaction per change: closing and opening are one
// process each, where the iptables and ip6tables commands it replaces
// were six (each 0.5-1 s under TCG on a loaded master, on the path of an
// API server's restart). Its input chain runs before iptables' filter
// table (priority -10 against 0), and a reject there is final whatever
// the other tables say; the rules kube-proxy and the agent program with
// iptables are not touched.
type Gate struct {
	// Name makes the table's name, TablePrefix+Name.
	Name string
	// Port is the local TCP port refused.
	Port uint16
	// Allow are the sources let through while closed.
	Allow []netip.Addr
}

// TablePrefix begins every gate's nftables table name.
const TablePrefix = "kubeup-gate-"

// gatePriority puts the gate's chain before iptables-nft's filter INPUT.
const gatePriority = -10

// CheckName reports a Name that would not make a table name kubeup's
// gates use (so a command can refuse it before changing anything).
func (g Gate) CheckName() error {
	if !validGateName(g.Name) {
		return fmt.Errorf("gate name %q: want 1-32 lower-case letters, digits and '-'", g.Name)
	}
	return nil
}

func validGateName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return false
		}
	}
	return true
}

func (g Gate) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: TablePrefix + g.Name}
}

// Close programs the gate, replacing any table of the same name (a failed
// start's) in the same transaction, so exactly one copy is in place.
func (g Gate) Close(c *nftables.Conn) error {
	if err := g.CheckName(); err != nil {
		return err
	}
	if g.Port == 0 {
		return errors.New("gate port: want 1-65535")
	}
	t := g.table()
	// "add" creates the table if a previous start did not leave it, so
	// that the delete after it always has something to delete.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{
		Name:     "input",
		Table:    t,
		Type:     nftables.ChainTypeFilter,
		Hooknum:  nftables.ChainHookInput,
		Priority: nftables.ChainPriorityRef(gatePriority),
	})
	for _, r := range g.rules() {
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("closing port %d (nftables table inet %s): %w", g.Port, t.Name, err)
	}
	return nil
}

// Open deletes the gate's table (only its Name counts); a gate that is
// not there is open.
func (g Gate) Open(c *nftables.Conn) error {
	if err := g.CheckName(); err != nil {
		return err
	}
	t := g.table()
	// Add then delete: one transaction that succeeds whether or not the
	// table exists (a delete alone fails with ENOENT).
	c.AddTable(t)
	c.DelTable(t)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("opening port %d (nftables table inet %s): %w", g.Port, t.Name, err)
	}
	return nil
}

// rules: each allowed source accepted (which ends only this chain), then
// TCP to the port rejected with a reset and counted.
func (g Gate) rules() [][]expr.Any {
	var rules [][]expr.Any
	for _, a := range g.Allow {
		proto, off := byte(unix.NFPROTO_IPV4), uint32(12) // IPv4 source address
		if a.Is6() && !a.Is4In6() {
			proto, off = unix.NFPROTO_IPV6, 8 // IPv6 source address
		}
		a = a.Unmap()
		rules = append(rules, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: uint32(a.BitLen() / 8)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: a.AsSlice()},
			&expr.Verdict{Kind: expr.VerdictAccept},
		})
	}
	return append(rules, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, // destination port
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(g.Port)},
		&expr.Counter{},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
	})
}
