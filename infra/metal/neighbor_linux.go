package metal

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// kernelNeighbor finds an address's MAC in the kernel's neighbour (ARP)
// table: a machine that just opened a connection to this host from the
// same network is there.
func kernelNeighbor(ip netip.Addr) (net.HardwareAddr, error) {
	neigh, err := netlink.NeighList(0, unix.AF_INET)
	if err != nil {
		return nil, err
	}
	for _, n := range neigh {
		if a, ok := netip.AddrFromSlice(n.IP); ok && a.Unmap() == ip && len(n.HardwareAddr) == 6 {
			return n.HardwareAddr, nil
		}
	}
	return nil, fmt.Errorf("%s is not in the neighbour table (not on this host's network)", ip)
}
