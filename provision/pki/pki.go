package pki

import (
	"crypto/rand"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"time"
)

// Machine is one master.
type Machine struct {
	Name string `json:"name"` // DNS label; also the etcd member and node name
	IP   net.IP `json:"ip"`
}

// Cluster is what the PKI depends on.
type Cluster struct {
	Name               string    `json:"name"`                         // cluster name, e.g. "demo"
	DNSDomain          string    `json:"dnsDomain"`                    // "cluster.local"
	APIServerServiceIP net.IP    `json:"apiServerServiceIP"`           // first IP of the service CIDR, e.g. 10.96.0.1
	ExtraAPIServerSANs []string  `json:"extraAPIServerSANs,omitempty"` // DNS names or IPs (e.g. a load balancer name, "127.0.0.1")
	Masters            []Machine `json:"masters"`
}

// Options are the sources of time and randomness and the lifetimes.
type Options struct {
	// Now is the clock (default time.Now). NotBefore is Now()-ClockSkew so
	// that machines whose clocks lag slightly accept fresh certificates;
	// NotAfter is NotBefore + lifetime (capped at the issuing CA's NotAfter).
	Now func() time.Time
	// Rand is where private keys, serial numbers, the encryption key and the
	// bootstrap token come from (default crypto/rand.Reader).
	Rand         io.Reader
	CALifetime   time.Duration // default DefaultCALifetime
	CertLifetime time.Duration // default DefaultCertLifetime
}

// Defaults for Options.
const (
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
	DefaultCertLifetime = 365 * 24 * time.Hour
	// ClockSkew is how far NotBefore is back-dated.
	ClockSkew = 5 * time.Minute
)

func (o Options) withDefaults() Options {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.CALifetime == 0 {
		o.CALifetime = DefaultCALifetime
	}
	if o.CertLifetime == 0 {
		o.CertLifetime = DefaultCertLifetime
	}
	return o
}

func (o Options) validate() error {
	var errs []error
	if o.CALifetime < 0 {
		errs = append(errs, fmt.Errorf("CALifetime %v is negative", o.CALifetime))
	}
	if o.CertLifetime < 0 {
		errs = append(errs, fmt.Errorf("CertLifetime %v is negative", o.CertLifetime))
	}
	return errors.Join(errs...)
}

// Place is a kind of machine that carries a file.
type Place string

// Places.
const (
	PlaceMaster Place = "master"
	PlaceNode   Place = "node"
	// PlaceHost is kubeup's state directory on the operator's machine only.
	// Every credential is kept there; a row whose Where is only PlaceHost
	// never goes to a machine.
	PlaceHost Place = "host"
)

// Kind says what a table row is.
type Kind string

// Kinds.
const (
	KindCA      Kind = "ca"      // a self-signed CA certificate and its key
	KindCert    Kind = "cert"    // a leaf certificate signed by Spec.CA, and its key
	KindKeyPair Kind = "keypair" // a bare key pair: CertFile holds the public key
)

// Spec is one row of the certificate table.
type Spec struct {
	Name         string // e.g. "apiserver"; unique together with Machine
	Kind         Kind
	CA           string // name of the signing CA; "" for a CA or a key pair
	CommonName   string
	Organization []string
	DNSNames     []string
	IPAddresses  []net.IP
	Usages       []x509.ExtKeyUsage
	// CertFile and KeyFile are absolute paths on the machine, "" for rows
	// that stay on the host.
	CertFile, KeyFile string
	// Machine is the master a per-master row belongs to, "" when shared.
	Machine string
	// Where lists the machines that carry CertFile.
	Where []Place
	// KeyWhere lists the machines that carry KeyFile. It differs from Where
	// for CAs: machines trust a CA without holding its key.
	KeyWhere []Place
}

// ID names a row uniquely: Name for shared rows, Name/Machine for per-master
// rows (e.g. "apiserver/master-0").
func (s Spec) ID() string {
	if s.Machine == "" {
		return s.Name
	}
	return s.Name + "/" + s.Machine
}

// onMachine reports whether place p, machine m carries the file placed at ps.
func (s Spec) onMachine(ps []Place, p Place, m string) bool {
	if p == PlaceHost || (s.Machine != "" && s.Machine != m) {
		return false
	}
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

var dnsLabel = `[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?`

var (
	labelRE     = regexp.MustCompile(`^` + dnsLabel + `$`)
	subdomainRE = regexp.MustCompile(`^(\*\.)?` + dnsLabel + `(\.` + dnsLabel + `)*$`)
)

func validDNSName(s string) bool { return len(s) <= 253 && subdomainRE.MatchString(s) }

// Validate reports every problem with c at once.
func (c Cluster) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Name == "" {
		bad("name: must not be empty")
	}
	if c.DNSDomain == "" || strings.HasPrefix(c.DNSDomain, "*") || !validDNSName(c.DNSDomain) {
		bad("dnsDomain: %q is not a DNS name", c.DNSDomain)
	}
	if c.APIServerServiceIP == nil {
		bad("apiServerServiceIP: must be set")
	}
	for i, s := range c.ExtraAPIServerSANs {
		if net.ParseIP(s) == nil && !validDNSName(s) {
			bad("extraAPIServerSANs[%d]: %q is neither an IP address nor a lower-case DNS name", i, s)
		}
	}
	if len(c.Masters) == 0 {
		bad("masters: at least one is needed")
	}
	names := map[string]int{}
	ips := map[string]int{}
	for i, m := range c.Masters {
		if !labelRE.MatchString(m.Name) {
			bad("masters[%d].name: %q is not a lower-case DNS label", i, m.Name)
		} else if j, dup := names[m.Name]; dup {
			bad("masters[%d].name: %q repeats masters[%d]", i, m.Name, j)
		} else {
			names[m.Name] = i
		}
		if m.IP == nil {
			bad("masters[%d].ip: must be set", i)
		} else if j, dup := ips[m.IP.String()]; dup {
			bad("masters[%d].ip: %s repeats masters[%d]", i, m.IP, j)
		} else {
			ips[m.IP.String()] = i
		}
	}
	return errors.Join(errs...)
}
