package installer

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// Kernel command line parameters the boot server's iPXE script passes.
const (
	ParamServer  = "kubeup.server"  // the boot server's base URL
	ParamMachine = "kubeup.machine" // the machine's name
	ParamMAC     = "kubeup.mac"     // the interface it booted from
	ParamAddress = "kubeup.address" // its address and prefix length (10.0.0.5/24)
	ParamGateway = "kubeup.gateway" // its default route ("" for none)
	ParamDisk    = "kubeup.disk"    // the disk to install to ("" for the first not removable)
	ParamImage   = "kubeup.image"   // path of the compressed image on the server
	ParamSHA256  = "kubeup.sha256"  // sha256 of the uncompressed image
	ParamSize    = "kubeup.size"    // bytes of the uncompressed image
	ParamToken   = "kubeup.token"   // the machine's token for its seed and reports
)

// Params are what the installer is told on its kernel command line.
type Params struct {
	Server  *url.URL
	Machine string
	MAC     net.HardwareAddr
	Address netip.Prefix
	Gateway netip.Addr // invalid when there is none
	Disk    string
	Image   string
	SHA256  string
	Size    int64
	Token   string
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseCmdline reads the installer's parameters from a kernel command line
// and names every one that is missing or malformed.
func ParseCmdline(cmdline string) (*Params, error) {
	v := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		if k, val, ok := strings.Cut(f, "="); ok && strings.HasPrefix(k, "kubeup.") {
			v[k] = val
		}
	}
	var p Params
	var bad []string
	fail := func(k, format string, a ...any) { bad = append(bad, k+": "+fmt.Sprintf(format, a...)) }
	if u, err := url.Parse(v[ParamServer]); err != nil || u.Scheme != "http" || u.Host == "" {
		fail(ParamServer, "%q is not an http:// URL", v[ParamServer])
	} else {
		p.Server = u
	}
	if p.Machine = v[ParamMachine]; p.Machine == "" {
		fail(ParamMachine, "missing")
	}
	if mac, err := net.ParseMAC(v[ParamMAC]); err != nil || len(mac) != 6 {
		fail(ParamMAC, "%q is not a MAC address", v[ParamMAC])
	} else {
		p.MAC = mac
	}
	if a, err := netip.ParsePrefix(v[ParamAddress]); err != nil || !a.Addr().Is4() {
		fail(ParamAddress, "%q is not an IPv4 address with a prefix length", v[ParamAddress])
	} else {
		p.Address = a
	}
	if g := v[ParamGateway]; g != "" {
		if a, err := netip.ParseAddr(g); err != nil || !a.Is4() {
			fail(ParamGateway, "%q is not an IPv4 address", g)
		} else {
			p.Gateway = a
		}
	}
	if p.Disk = v[ParamDisk]; p.Disk != "" && !strings.HasPrefix(p.Disk, "/dev/") {
		fail(ParamDisk, "%q is not a device path", p.Disk)
	}
	if p.Image = v[ParamImage]; !strings.HasPrefix(p.Image, "/") {
		fail(ParamImage, "%q is not a path on the server", p.Image)
	}
	if p.SHA256 = v[ParamSHA256]; !hexSHA256.MatchString(p.SHA256) {
		fail(ParamSHA256, "%q is not a sha256 in hexadecimal", p.SHA256)
	}
	if n, err := strconv.ParseInt(v[ParamSize], 10, 64); err != nil || n <= 0 {
		fail(ParamSize, "%q is not a size in bytes", v[ParamSize])
	} else {
		p.Size = n
	}
	if p.Token = v[ParamToken]; p.Token == "" {
		fail(ParamToken, "missing")
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("kernel command line: %s", strings.Join(bad, "; "))
	}
	return &p, nil
}

// Cmdline is the part of the kernel command line that carries p (the
// server writes it, ParseCmdline reads it).
func (p *Params) Cmdline() string {
	f := []string{
		ParamServer + "=" + p.Server.String(),
		ParamMachine + "=" + p.Machine,
		ParamMAC + "=" + p.MAC.String(),
		ParamAddress + "=" + p.Address.String(),
	}
	if p.Gateway.IsValid() {
		f = append(f, ParamGateway+"="+p.Gateway.String())
	}
	if p.Disk != "" {
		f = append(f, ParamDisk+"="+p.Disk)
	}
	f = append(f, ParamImage+"="+p.Image, ParamSHA256+"="+p.SHA256, ParamSize+"="+strconv.FormatInt(p.Size, 10), ParamToken+"="+p.Token)
	return strings.Join(f, " ")
}

// URL is a path on the boot server.
func (p *Params) URL(path string) string {
	u := *p.Server
	u.Path = strings.TrimSuffix(u.Path, "/") + path
	return u.String()
}
