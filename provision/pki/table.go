package pki

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
)

// Names of the CAs and of the other rows that code outside the table refers to.
const (
	KubernetesCA   = "kubernetes-ca"
	EtcdCA         = "etcd-ca"
	FrontProxyCA   = "front-proxy-ca"
	ServiceAccount = "service-account"
)

// Dir is where the machines keep their PKI (kubeadm's layout).
const Dir = "/etc/kubernetes/pki"

var (
	server       = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	client       = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	serverClient = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}

	masters       = []Place{PlaceMaster}
	mastersNodes  = []Place{PlaceMaster, PlaceNode}
	hostOnly      = []Place{PlaceHost}
	localhostIPv4 = net.IPv4(127, 0, 0, 1).To4()
)

// Table is the single certificate table of cluster c, in a fixed order: CAs,
// the service-account key pair, then the leaves, per-master rows expanded in
// the order of c.Masters. It assumes c is valid (see Cluster.Validate).
func Table(c Cluster) []Spec {
	var t []Spec
	// file gives the cert and key paths of a row stored as Dir/<base>.{crt,key}.
	file := func(base string) (string, string) {
		return Dir + "/" + base + ".crt", Dir + "/" + base + ".key"
	}
	add := func(s Spec, base string) {
		if s.Kind == "" {
			s.Kind = KindCert
		}
		if base != "" {
			s.CertFile, s.KeyFile = file(base)
		}
		if s.KeyWhere == nil {
			s.KeyWhere = s.Where
		}
		// The shared package-level slices must not be reachable from callers.
		s.Where, s.KeyWhere, s.Usages = slices.Clone(s.Where), slices.Clone(s.KeyWhere), slices.Clone(s.Usages)
		for i, ip := range s.IPAddresses {
			s.IPAddresses[i] = slices.Clone(ip)
		}
		t = append(t, s)
	}
	perMaster := func(f func(m Machine) (Spec, string)) {
		for _, m := range c.Masters {
			s, base := f(m)
			s.Machine = m.Name
			add(s, base)
		}
	}
	// machineSANs are the names a per-master server is reached by.
	machineSANs := func(m Machine) ([]string, []net.IP) {
		return []string{"localhost", m.Name}, dedupIPs([]net.IP{localhostIPv4, m.IP})
	}

	// Every CA key is on the masters (as kubeadm and Talos keep them on
	// control-plane machines): the controller-manager signs CSRs with the
	// kubernetes CA's key, and each master's agent renews the leaves it
	// carries with the key of their CA, without the host. The kubernetes CA
	// is the root of all API trust, so the etcd and front-proxy keys beside
	// it add no power to a stolen master disk. Nodes hold no CA key.
	add(Spec{Name: KubernetesCA, Kind: KindCA, CommonName: "kubernetes",
		Where: mastersNodes, KeyWhere: masters}, "ca")
	add(Spec{Name: EtcdCA, Kind: KindCA, CommonName: "etcd-ca",
		Where: masters, KeyWhere: masters}, "etcd/ca")
	add(Spec{Name: FrontProxyCA, Kind: KindCA, CommonName: "front-proxy-ca",
		Where: masters, KeyWhere: masters}, "front-proxy-ca")
	add(Spec{Name: ServiceAccount, Kind: KindKeyPair, Where: masters,
		CertFile: Dir + "/sa.pub", KeyFile: Dir + "/sa.key"}, "")

	perMaster(func(m Machine) (Spec, string) {
		dns := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + c.DNSDomain, "localhost", m.Name}
		// ::1: the unit's readiness wait asks there while the port is
		// closed to every other source (components.apiServerGate).
		ips := []net.IP{c.APIServerServiceIP, m.IP, localhostIPv4, net.IPv6loopback}
		for _, san := range c.ExtraAPIServerSANs {
			if ip := net.ParseIP(san); ip != nil {
				ips = append(ips, ip)
			} else {
				dns = append(dns, san)
			}
		}
		return Spec{Name: "apiserver", CA: KubernetesCA, CommonName: "kube-apiserver",
			DNSNames: dedupNames(dns), IPAddresses: dedupIPs(ips), Usages: server, Where: masters}, "apiserver"
	})
	add(Spec{Name: "apiserver-kubelet-client", CA: KubernetesCA, CommonName: "kube-apiserver-kubelet-client",
		Organization: []string{"system:masters"}, Usages: client, Where: masters}, "apiserver-kubelet-client")
	add(Spec{Name: "apiserver-etcd-client", CA: EtcdCA, CommonName: "kube-apiserver-etcd-client",
		Usages: client, Where: masters}, "apiserver-etcd-client")
	add(Spec{Name: "front-proxy-client", CA: FrontProxyCA, CommonName: "front-proxy-client",
		Usages: client, Where: masters}, "front-proxy-client")

	for _, name := range []string{"server", "peer"} {
		perMaster(func(m Machine) (Spec, string) {
			return Spec{Name: "etcd-" + name, CA: EtcdCA, CommonName: m.Name,
				DNSNames: []string{m.Name, "localhost"}, IPAddresses: dedupIPs([]net.IP{m.IP, localhostIPv4}),
				Usages: serverClient, Where: masters}, "etcd/" + name
		})
	}
	add(Spec{Name: "etcd-healthcheck-client", CA: EtcdCA, CommonName: "kube-etcd-healthcheck-client",
		Usages: client, Where: masters}, "etcd/healthcheck-client")

	for _, comp := range []string{"controller-manager", "scheduler"} {
		add(Spec{Name: comp + "-client", CA: KubernetesCA, CommonName: "system:kube-" + comp,
			Usages: client, Where: masters}, comp+"-client")
		perMaster(func(m Machine) (Spec, string) {
			dns, ips := machineSANs(m)
			return Spec{Name: comp + "-server", CA: KubernetesCA, CommonName: "kube-" + comp,
				DNSNames: dns, IPAddresses: ips, Usages: server, Where: masters}, comp
		})
	}

	// Nodes get their kubelet certificates by TLS bootstrapping instead.
	perMaster(func(m Machine) (Spec, string) {
		return Spec{Name: "kubelet-client", CA: KubernetesCA, CommonName: "system:node:" + m.Name,
			Organization: []string{"system:nodes"}, Usages: client, Where: masters}, "kubelet-client"
	})
	perMaster(func(m Machine) (Spec, string) {
		return Spec{Name: "kubelet-server", CA: KubernetesCA, CommonName: m.Name,
			DNSNames: []string{m.Name}, IPAddresses: dedupIPs([]net.IP{m.IP}), Usages: server, Where: masters}, "kubelet"
	})

	add(Spec{Name: "kube-proxy", CA: KubernetesCA, CommonName: "system:kube-proxy",
		Usages: client, Where: mastersNodes}, "kube-proxy-client")
	add(Spec{Name: "kubeup-agent", CA: KubernetesCA, CommonName: "kubeup-agent",
		Organization: []string{"kubeup:agents"}, DNSNames: []string{"kubeup-agent", "localhost"},
		IPAddresses: dedupIPs([]net.IP{localhostIPv4}), Usages: serverClient, Where: mastersNodes}, "kubeup-agent")
	add(Spec{Name: "addon-manager", CA: KubernetesCA, CommonName: "system:kubeup-addon-manager",
		Organization: []string{"system:masters"}, Usages: client, Where: masters}, "addon-manager-client")
	add(Spec{Name: "admin", CA: KubernetesCA, CommonName: "kubernetes-admin",
		Organization: []string{"system:masters"}, Usages: client, Where: hostOnly}, "")
	return t
}

func dedupNames(in []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

// dedupIPs drops repeats and stores IPv4 addresses in 4 bytes, as they come
// back from a parsed certificate.
func dedupIPs(in []net.IP) []net.IP {
	var out []net.IP
	seen := map[string]bool{}
	for _, ip := range in {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !seen[ip.String()] {
			seen[ip.String()] = true
			out = append(out, ip)
		}
	}
	return out
}

// WriteTable prints specs as a table for people: name, CA, subject, SANs,
// usages and the files with the machines that carry them. Rows with several
// SANs or files continue on the following lines.
func WriteTable(w io.Writer, specs []Spec) error {
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tCA\tSUBJECT\tSANS\tUSAGES\tFILES")
	for _, s := range specs {
		subject := []string{}
		if s.CommonName != "" {
			subject = append(subject, "CN="+s.CommonName)
		}
		for _, o := range s.Organization {
			subject = append(subject, "O="+o)
		}
		var sans []string
		sans = append(sans, s.DNSNames...)
		for _, ip := range s.IPAddresses {
			sans = append(sans, ip.String())
		}
		ca := s.CA
		if ca == "" {
			ca = "-"
		}
		var files []string
		switch {
		case s.CertFile == "" && s.KeyFile == "":
			files = []string{"(host only)"}
		default:
			files = []string{s.CertFile + " " + placesString(s.Where), s.KeyFile + " " + placesString(s.KeyWhere)}
		}
		first := []string{s.ID(), ca, orDash(strings.Join(subject, ",")), "", usagesString(s), files[0]}
		lines := max(len(sans), len(files))
		for i := 0; i < lines; i++ {
			row := []string{"", "", "", "", "", ""}
			if i == 0 {
				row = first
			}
			if i < len(sans) {
				row[3] = sans[i]
			} else if i == 0 {
				row[3] = "-"
			}
			if i < len(files) {
				row[5] = files[i]
			}
			fmt.Fprintln(tw, strings.Join(row, "\t"))
		}
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("write certificate table: %w", err)
	}
	// tabwriter pads short rows; trailing blanks only get in the way.
	for line := range strings.Lines(buf.String()) {
		if _, err := io.WriteString(w, strings.TrimRight(line, " \n")+"\n"); err != nil {
			return fmt.Errorf("write certificate table: %w", err)
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func placesString(ps []Place) string {
	var s []string
	for _, p := range ps {
		if p == PlaceHost {
			return "(host only)"
		}
		s = append(s, string(p)+"s")
	}
	return "(" + strings.Join(s, ",") + ")"
}

func usagesString(s Spec) string {
	switch s.Kind {
	case KindCA:
		return "ca"
	case KindKeyPair:
		return "sa-signing"
	}
	var u []string
	for _, e := range s.Usages {
		switch e {
		case x509.ExtKeyUsageServerAuth:
			u = append(u, "server")
		case x509.ExtKeyUsageClientAuth:
			u = append(u, "client")
		default:
			u = append(u, fmt.Sprintf("eku(%d)", e))
		}
	}
	return orDash(strings.Join(u, ","))
}
