package metal

import (
	"fmt"
	"strings"
)

// DHCPHost is a DHCP reservation.
type DHCPHost struct{ MAC, IP, Name string }

// DnsmasqConf is the dnsmasq configuration the README documents for a
// network whose DHCP server is dnsmasq: addresses from a range (and the
// reservations), iPXE clients sent to kubeup's boot script, other PXE
// firmware sent to iPXE over TFTP (kubeup serves it on port 69; here
// dnsmasq runs no TFTP of its own). The machines with a MAC in proxied get
// an address only, no boot settings: kubeup's proxyDHCP names their boot
// file, as on a network whose DHCP server the user does not change.
func DnsmasqConf(iface, rangeStart, rangeEnd, server string, hosts []DHCPHost, proxied ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "interface=%s\nbind-interfaces\nport=0\ndhcp-range=%s,%s,12h\n", iface, rangeStart, rangeEnd)
	for _, h := range hosts {
		fmt.Fprintf(&b, "dhcp-host=%s,%s,%s\n", h.MAC, h.IP, h.Name)
	}
	not := ""
	for _, mac := range proxied {
		fmt.Fprintf(&b, "dhcp-mac=set:proxied,%s\n", mac)
		not = "tag:!proxied,"
	}
	host := server
	if i := strings.LastIndex(server, ":"); i > 0 {
		host = server[:i]
	}
	fmt.Fprintf(&b, `# iPXE says so in option 175: send it to kubeup's boot script
dhcp-match=set:ipxe,175
dhcp-boot=%[3]stag:ipxe,http://%[1]s/boot.ipxe
# other firmware: chain-load iPXE from kubeup's TFTP (BIOS, UEFI x86-64)
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=%[3]stag:!ipxe,tag:efi64,ipxe.efi,,%[2]s
dhcp-boot=%[3]stag:!ipxe,tag:!efi64,undionly.kpxe,,%[2]s
`, server, host, not)
	return b.String()
}
