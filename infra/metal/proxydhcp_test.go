package metal

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

func pxeDiscover(t *testing.T, mac string, arch iana.Arch, ipxe bool, typ dhcpv4.MessageType) *dhcpv4.DHCPv4 {
	t.Helper()
	hw, _ := net.ParseMAC(mac)
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003010")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
	}
	if ipxe {
		mods = append(mods, dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")))
	}
	d, err := dhcpv4.NewDiscovery(hw, mods...)
	if err != nil {
		t.Fatal(err)
	}
	// Over the wire and back, as the server gets it.
	d, err = dhcpv4.FromBytes(d.ToBytes())
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// ProxyDHCP names the boot file — kubeup's script for iPXE, iPXE itself
// over TFTP for other firmware — and never an address; it answers the
// cluster's machines only, and on port 67 only their DISCOVER.
func TestProxyDHCPReplies(t *testing.T) {
	from := ""
	s, ts, _ := testServer(t, &from)
	server := strings.TrimPrefix(ts.URL, "http://")
	host, _, _ := net.SplitHostPort(server)
	for _, c := range []struct {
		name      string
		req       *dhcpv4.DHCPv4
		port      int
		want      string // boot file; "" for no reply
		wantType  dhcpv4.MessageType
		wantTFTP  bool
		wantWhose string
	}{
		{"iPXE discover", pxeDiscover(t, "52:54:00:aa:00:01", iana.EFI_X86_64, true, dhcpv4.MessageTypeDiscover), 67, ts.URL + "/boot.ipxe", dhcpv4.MessageTypeOffer, false, "cp1"},
		{"UEFI PXE discover", pxeDiscover(t, "52:54:00:aa:00:02", iana.EFI_X86_64, false, dhcpv4.MessageTypeDiscover), 67, "ipxe.efi", dhcpv4.MessageTypeOffer, true, "w1"},
		{"UEFI BC discover", pxeDiscover(t, "52:54:00:aa:00:02", iana.EFI_BC, false, dhcpv4.MessageTypeDiscover), 67, "ipxe.efi", dhcpv4.MessageTypeOffer, true, "w1"},
		{"BIOS PXE discover", pxeDiscover(t, "52:54:00:aa:00:02", iana.INTEL_X86PC, false, dhcpv4.MessageTypeDiscover), 67, "undionly.kpxe", dhcpv4.MessageTypeOffer, true, "w1"},
		{"BIOS PXE request on 4011", pxeDiscover(t, "52:54:00:aa:00:02", iana.INTEL_X86PC, false, dhcpv4.MessageTypeRequest), 4011, "undionly.kpxe", dhcpv4.MessageTypeAck, true, "w1"},
		{"iPXE request on 4011", pxeDiscover(t, "52:54:00:aa:00:01", iana.INTEL_X86PC, true, dhcpv4.MessageTypeRequest), 4011, ts.URL + "/boot.ipxe", dhcpv4.MessageTypeAck, false, "cp1"},
		{"a request on 67 is the DHCP server's", pxeDiscover(t, "52:54:00:aa:00:01", iana.INTEL_X86PC, true, dhcpv4.MessageTypeRequest), 67, "", 0, false, ""},
		{"a discover on 4011", pxeDiscover(t, "52:54:00:aa:00:01", iana.INTEL_X86PC, true, dhcpv4.MessageTypeDiscover), 4011, "", 0, false, ""},
		{"an unknown MAC", pxeDiscover(t, "52:54:00:aa:00:09", iana.INTEL_X86PC, true, dhcpv4.MessageTypeDiscover), 67, "", 0, false, ""},
	} {
		reply, m := s.proxyReply(c.req, c.port)
		if c.want == "" {
			if reply != nil {
				t.Errorf("%s: answered %s", c.name, reply.Summary())
			}
			continue
		}
		if reply == nil {
			t.Errorf("%s: no answer", c.name)
			continue
		}
		reply, err := dhcpv4.FromBytes(reply.ToBytes())
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if m.Name != c.wantWhose || reply.MessageType() != c.wantType || reply.BootFileName != c.want || reply.BootFileNameOption() != c.want {
			t.Errorf("%s: %s %s file %q/%q, want %s %s", c.name, m.Name, reply.MessageType(), reply.BootFileName, reply.BootFileNameOption(), c.wantType, c.want)
		}
		if !reply.YourIPAddr.Equal(net.IPv4zero) || reply.ServerIdentifier().String() != host || reply.ServerIPAddr.String() != host || reply.ClassIdentifier() != "PXEClient" {
			t.Errorf("%s: address %s, server %s/%s, class %q", c.name, reply.YourIPAddr, reply.ServerIdentifier(), reply.ServerIPAddr, reply.ClassIdentifier())
		}
		if got := reply.TFTPServerName(); (got == host) != c.wantTFTP {
			t.Errorf("%s: TFTP server %q", c.name, got)
		}
		if reply.TransactionID != c.req.TransactionID || reply.ClientHWAddr.String() != c.req.ClientHWAddr.String() {
			t.Errorf("%s: not an answer to the request: %s", c.name, reply.Summary())
		}
	}
	// Not a PXE client at all: the network's DHCP server's business.
	hw, _ := net.ParseMAC("52:54:00:aa:00:01")
	plain, _ := dhcpv4.NewDiscovery(hw)
	if reply, _ := s.proxyReply(plain, 67); reply != nil {
		t.Errorf("answered a DISCOVER that is not PXE's: %s", reply.Summary())
	}
}

func TestInterfaceWith(t *testing.T) {
	if name, err := interfaceWith(netip.MustParseAddr("127.0.0.1")); err != nil || name == "" {
		t.Errorf("loopback: %q %v", name, err)
	}
	if _, err := interfaceWith(netip.MustParseAddr("192.0.2.77")); err == nil || !strings.Contains(err.Error(), "spec.target.metal.server") {
		t.Errorf("an address of no interface: %v", err)
	}
}
