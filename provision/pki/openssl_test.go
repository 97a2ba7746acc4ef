package pki

import (
	"crypto/x509"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func needOpenSSL(t *testing.T) string {
	t.Helper()
	path, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl is not installed (apt-get install openssl): skipping the check with the real tool")
	}
	return path
}

// TestOpenSSLVerify checks every certificate with the real openssl: it
// verifies against its own CA for its purpose, not against another CA, and
// openssl reads back the table's subject and SANs.
func TestOpenSSLVerify(t *testing.T) {
	openssl := needOpenSSL(t)
	b := mustGenerate(t, testCluster(3), testOptions(11))
	dir := t.TempDir()
	if err := b.Save(dir); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, error) {
		out, err := exec.Command(openssl, args...).CombinedOutput()
		return string(out), err
	}
	caFile := func(name string) string {
		s, _ := b.Spec(name)
		rel, _ := storePaths(s)
		return filepath.Join(dir, rel)
	}

	// Group the certificates by CA and purpose: one openssl run per group.
	type group struct{ ca, purpose string }
	groups := map[group][]string{}
	for _, s := range b.Specs {
		if s.Kind == KindKeyPair {
			continue
		}
		rel, _ := storePaths(s)
		path := filepath.Join(dir, rel)
		if s.Kind == KindCA {
			groups[group{s.Name, "any"}] = append(groups[group{s.Name, "any"}], path)
		}
		for _, u := range s.Usages {
			p := map[x509.ExtKeyUsage]string{x509.ExtKeyUsageServerAuth: "sslserver", x509.ExtKeyUsageClientAuth: "sslclient"}[u]
			groups[group{s.CA, p}] = append(groups[group{s.CA, p}], path)
		}
		checkSubject(t, run, s, path)
	}
	for g, files := range groups {
		out, err := run(append([]string{"verify", "-x509_strict", "-purpose", g.purpose, "-CAfile", caFile(g.ca)}, files...)...)
		if err != nil {
			t.Errorf("openssl verify -purpose %s -CAfile %s: %v\n%s", g.purpose, g.ca, err, out)
			continue
		}
		for _, f := range files {
			if !strings.Contains(out, f+": OK") {
				t.Errorf("openssl verify %s against %s: not OK\n%s", f, g.ca, out)
			}
		}
	}
	// A certificate does not verify against another CA.
	_, leaf := storePaths(Spec{Name: "apiserver-etcd-client", Kind: KindCert})
	leaf = strings.TrimSuffix(filepath.Join(dir, leaf), ".key") + ".crt"
	if out, err := run("verify", "-CAfile", caFile(KubernetesCA), leaf); err == nil {
		t.Errorf("an etcd-ca certificate verified against kubernetes-ca:\n%s", out)
	}
	// A server-only certificate is no client certificate.
	api := filepath.Join(dir, mastersDir, "master-0", "apiserver.crt")
	if out, err := run("verify", "-purpose", "sslclient", "-CAfile", caFile(KubernetesCA), api); err == nil {
		t.Errorf("the apiserver certificate verified for client use:\n%s", out)
	}
}

// checkSubject compares openssl's reading of path's subject and SANs with s.
func checkSubject(t *testing.T, run func(...string) (string, error), s Spec, path string) {
	t.Helper()
	out, err := run("x509", "-noout", "-subject", "-ext", "subjectAltName", "-nameopt", "RFC2253", "-in", path)
	if err != nil {
		t.Errorf("%s: openssl x509: %v\n%s", s.ID(), err, out)
		return
	}
	var cn string
	var orgs, dns, ips []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "subject="):
			// RFC 2253 lists the RDNs last first; the values here need no escaping.
			for _, rdn := range strings.Split(strings.TrimPrefix(line, "subject="), ",") {
				k, v, _ := strings.Cut(rdn, "=")
				switch k {
				case "CN":
					cn = v
				case "O":
					orgs = append([]string{v}, orgs...)
				default:
					t.Errorf("%s: unexpected subject attribute %q", s.ID(), rdn)
				}
			}
		case strings.HasPrefix(line, "DNS:"), strings.HasPrefix(line, "IP Address:"):
			for _, san := range strings.Split(line, ", ") {
				if v, ok := strings.CutPrefix(san, "DNS:"); ok {
					dns = append(dns, v)
				} else if v, ok := strings.CutPrefix(san, "IP Address:"); ok {
					ips = append(ips, net.ParseIP(v).String())
				} else {
					t.Errorf("%s: unexpected SAN %q", s.ID(), san)
				}
			}
		}
	}
	want := func(what string, got, want any) {
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: openssl reads %s %v, the table says %v", s.ID(), what, got, want)
		}
	}
	want("CN", cn, s.CommonName)
	want("O", orgs, slices.Clip(s.Organization))
	want("DNS SANs", dns, s.DNSNames)
	want("IP SANs", ips, ipStrings(s.IPAddresses))
}
