package probe

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestGateCheck(t *testing.T) {
	for _, g := range []Gate{
		{Name: "", Port: 6443},
		{Name: "api server", Port: 6443},
		{Name: "a-name-longer-than-thirty-two-characters", Port: 6443},
		{Name: "API", Port: 6443},
	} {
		if err := g.Close(nil); err == nil {
			t.Errorf("Close(%+v): no error", g)
		}
		if err := g.Open(nil); err == nil {
			t.Errorf("Open(%+v): no error", g)
		}
	}
	if err := (Gate{Name: "apiserver"}).Close(nil); err == nil || !strings.Contains(err.Error(), "port") {
		t.Errorf("Close without a port: %v, want an error naming the port", err)
	}
}

// In a network namespace of its own (root only): a closed gate resets
// connections to its port over IPv4 and from any IPv6 source but the
// allowed one, leaves other ports alone, closes twice into one table, and
// opens (twice) into none.
func TestGateInNetns(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: needs a network namespace")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for a network namespace and nftables")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	ns, err := netns.New() // this thread is now in it
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // never unlock a thread left in the wrong namespace
		}
		runtime.UnlockOSThread()
	}()
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	// One listener for both families, one for a port the gate does not name.
	ln, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	other, err := net.Listen("tcp", "[::]:0")
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	for _, l := range []net.Listener{ln, other} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	// A second IPv6 address, to come from a source that is not ::1.
	if err := netlink.AddrAdd(lo, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("fd00::7"), Mask: net.CIDRMask(128, 128)}, Flags: 0x80 /* IFA_F_NODAD */}); err != nil {
		t.Fatal(err)
	}
	port := uint16(ln.Addr().(*net.TCPAddr).Port)
	otherPort := other.Addr().(*net.TCPAddr).Port
	c, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	g := Gate{Name: "test", Port: port, Allow: []netip.Addr{netip.MustParseAddr("::1")}}

	dial := func(from, to string, p int) error {
		d := net.Dialer{Timeout: 3 * time.Second}
		if from != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
		}
		conn, err := d.Dial("tcp", net.JoinHostPort(to, strconv.Itoa(p)))
		if err == nil {
			conn.Close()
		}
		return err
	}
	expect := func(state string, want map[[2]string]bool) {
		t.Helper()
		for k, open := range want {
			err := dial(k[0], k[1], int(port))
			switch {
			case open && err != nil:
				t.Errorf("%s: %s → %s: %v, want a connection", state, k[0], k[1], err)
			case !open && !errors.Is(err, syscall.ECONNREFUSED):
				t.Errorf("%s: %s → %s: %v, want connection refused (a reset)", state, k[0], k[1], err)
			}
		}
		if err := dial("", "127.0.0.1", otherPort); err != nil {
			t.Errorf("%s: another port: %v", state, err)
		}
	}
	paths := func(v4, fromLoopback6, fromOther6 bool) map[[2]string]bool {
		return map[[2]string]bool{{"", "127.0.0.1"}: v4, {"::1", "::1"}: fromLoopback6, {"fd00::7", "::1"}: fromOther6}
	}

	expect("before", paths(true, true, true))
	for range 2 {
		if err := g.Close(c); err != nil {
			t.Fatal(err)
		}
	}
	if closed, err := isClosed(c, g); err != nil || !closed {
		t.Fatalf("IsClosed after Close: %v, %v", closed, err)
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	if len(chains) != 1 {
		t.Errorf("closed twice: %d chains, want 1", len(chains))
	}
	expect("closed", paths(false, true, false))
	for range 2 {
		if err := g.Open(c); err != nil {
			t.Fatal(err)
		}
	}
	if closed, err := isClosed(c, g); err != nil || closed {
		t.Fatalf("IsClosed after Open: %v, %v", closed, err)
	}
	expect("opened", paths(true, true, true))
}

// isClosed says whether the gate's table is in place.
func isClosed(c *nftables.Conn, g Gate) (bool, error) {
	ts, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("listing nftables tables: %w", err)
	}
	for _, t := range ts {
		if t.Name == TablePrefix+g.Name {
			return true, nil
		}
	}
	return false, nil
}
