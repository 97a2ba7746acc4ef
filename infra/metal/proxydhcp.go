package metal

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// ProxyDHCP ports: offers go out from 67; PXE firmware asks port 4011 for
// the boot file once it has its address from the network's DHCP server.
const (
	proxyDHCPPort = 67
	proxyPXEPort  = 4011
)

// proxyReply is the proxy-DHCP answer (PXE specification 2.1, "proxyDHCP")
// to a request that reached port: an offer (port 67, DISCOVER) or an ack
// (port 4011, REQUEST) that names the boot file and hands out no address,
// so the network's own DHCP server keeps doing that. Only PXE clients that
// are machines of this cluster get one; nil means stay silent.
func (s *Server) proxyReply(req *dhcpv4.DHCPv4, port int) (*dhcpv4.DHCPv4, *state) {
	if req.OpCode != dhcpv4.OpcodeBootRequest || !strings.HasPrefix(req.ClassIdentifier(), "PXEClient") {
		return nil, nil
	}
	var typ dhcpv4.MessageType
	switch {
	case port == proxyDHCPPort && req.MessageType() == dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case port == proxyPXEPort && (req.MessageType() == dhcpv4.MessageTypeRequest || req.MessageType() == dhcpv4.MessageTypeInform):
		typ = dhcpv4.MessageTypeAck
	default: // requests on 67 are for the DHCP server that leases the address
		return nil, nil
	}
	m := s.lookup(req.ClientHWAddr.String())
	if m == nil {
		return nil, nil
	}
	server := s.serverIP()
	file := s.url("/boot.ipxe")
	ipxe := strings.Contains(string(req.GetOneOption(dhcpv4.OptionUserClassInformation)), "iPXE")
	if !ipxe {
		file = "undionly.kpxe"
		for _, a := range req.ClientArch() {
			if a == iana.EFI_X86_64 || a == iana.EFI_BC {
				file = "ipxe.efi"
			}
		}
	}
	reply, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithYourIP(net.IPv4zero),
		dhcpv4.WithServerIP(server.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		dhcpv4.WithOption(dhcpv4.OptBootFileName(file)),
		// PXE vendor options: discovery control 8 — boot from the file
		// named here, without a boot menu or boot server discovery.
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, []byte{6, 1, 8, 255}),
	)
	if err != nil {
		return nil, nil
	}
	reply.BootFileName = file
	if !ipxe {
		reply.UpdateOption(dhcpv4.OptTFTPServerName(server.String()))
	}
	return reply, m
}

// serverIP is the boot server's address, from its URL.
func (s *Server) serverIP() netip.Addr {
	host := s.base.Hostname()
	ip, _ := netip.ParseAddr(host)
	return ip.Unmap()
}

// ProxyDHCP is the boot server's proxyDHCP, listening.
type ProxyDHCP struct {
	Interface string
	servers   []*server4.Server
}

// ListenProxyDHCP makes the boot server answer the cluster's machines' PXE
// requests, on the interface that has the server's address, next to the
// network's DHCP server (which keeps leasing addresses). It needs ports 67
// and 4011 (root or CAP_NET_BIND_SERVICE), and cannot run on the host of
// that DHCP server, which holds port 67. Serve answers.
func (s *Server) ListenProxyDHCP() (*ProxyDHCP, error) {
	iface, err := interfaceWith(s.serverIP())
	if err != nil {
		return nil, err
	}
	p := &ProxyDHCP{Interface: iface}
	var once sync.Map // MAC and port already logged
	for _, port := range []int{proxyDHCPPort, proxyPXEPort} {
		port := port
		handler := func(conn net.PacketConn, peer net.Addr, req *dhcpv4.DHCPv4) {
			reply, m := s.proxyReply(req, port)
			if reply == nil {
				if req.MessageType() == dhcpv4.MessageTypeDiscover && strings.HasPrefix(req.ClassIdentifier(), "PXEClient") {
					if _, seen := once.LoadOrStore("unknown "+req.ClientHWAddr.String(), true); !seen {
						s.logf("proxyDHCP: PXE client %s is not a machine of this cluster: no answer", req.ClientHWAddr)
					}
				}
				return
			}
			to := peer
			if u, ok := peer.(*net.UDPAddr); ok && port == proxyDHCPPort {
				// The client has no address yet: broadcast to its port.
				to = &net.UDPAddr{IP: net.IPv4bcast, Port: u.Port}
			}
			if _, err := conn.WriteTo(reply.ToBytes(), to); err != nil {
				s.logf("proxyDHCP: answer %s: %v", m.Name, err)
				return
			}
			if _, seen := once.LoadOrStore(fmt.Sprintf("%s %d", m.MAC, port), true); !seen {
				s.logf("proxyDHCP: %s (%s) sent to %s (%s)", m.Name, m.MAC, reply.BootFileName, reply.MessageType())
			}
		}
		srv, err := server4.NewServer(iface, &net.UDPAddr{Port: port}, handler)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("proxyDHCP on %s port %d: %w (it needs root, and no DHCP server on this host)", iface, port, err)
		}
		p.servers = append(p.servers, srv)
	}
	return p, nil
}

func (p *ProxyDHCP) close() {
	for _, srv := range p.servers {
		srv.Close()
	}
}

// Serve answers until ctx ends (or a socket fails).
func (p *ProxyDHCP) Serve(ctx context.Context) error {
	errs := make(chan error, len(p.servers))
	for _, srv := range p.servers {
		go func() { errs <- srv.Serve() }()
	}
	received := 0
	var err error
	select {
	case <-ctx.Done():
	case err = <-errs:
		received++
	}
	p.close()
	for ; received < len(p.servers); received++ {
		<-errs
	}
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// interfaceWith names the network interface that has ip.
func interfaceWith(ip netip.Addr) (string, error) {
	ifaces, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifaces {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if got, ok := netip.AddrFromSlice(n.IP); ok && got.Unmap() == ip {
					return ifc.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no network interface of this host has %s (spec.target.metal.server): proxyDHCP answers on the machines' network", ip)
}
