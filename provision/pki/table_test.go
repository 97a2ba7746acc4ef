package pki

import (
	"bytes"
	"crypto/x509"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubeup.dev/kubeup/test/golden"
)

func TestTableGolden(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteTable(&buf, Table(testCluster(3))); err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "table", buf.Bytes())
}

func TestTableRows(t *testing.T) {
	c := testCluster(3)
	specs := Table(c)
	if !slices.EqualFunc(specs, Table(c), func(a, b Spec) bool { return a.ID() == b.ID() }) {
		t.Fatal("Table order is not deterministic")
	}
	// 3 CAs + service account + 10 shared leaves + 7 per-master leaves per master.
	if want := 3 + 1 + 10 + 7*3; len(specs) != want {
		t.Errorf("%d rows, want %d", len(specs), want)
	}
	ids := map[string]Spec{}
	files := map[string]string{}
	for _, s := range specs {
		if _, dup := ids[s.ID()]; dup {
			t.Errorf("%s: duplicate ID", s.ID())
		}
		ids[s.ID()] = s
		switch s.Kind {
		case KindCert:
			if ca, ok := ids[s.CA]; !ok || ca.Kind != KindCA {
				t.Errorf("%s: CA %q is not a CA row before it", s.ID(), s.CA)
			}
			if len(s.Usages) == 0 {
				t.Errorf("%s: no usages", s.ID())
			}
		case KindCA, KindKeyPair:
			if s.CA != "" {
				t.Errorf("%s: a %s has CA %q", s.ID(), s.Kind, s.CA)
			}
		default:
			t.Errorf("%s: kind %q", s.ID(), s.Kind)
		}
		hostOnly := slices.Equal(s.Where, []Place{PlaceHost})
		if hostOnly != (s.CertFile == "") || (s.CertFile == "") != (s.KeyFile == "") {
			t.Errorf("%s: files %q %q do not agree with Where %v", s.ID(), s.CertFile, s.KeyFile, s.Where)
		}
		for _, f := range []string{s.CertFile, s.KeyFile} {
			if f == "" {
				continue
			}
			if !filepath.IsAbs(f) || !strings.HasPrefix(f, Dir+"/") {
				t.Errorf("%s: file %q is not under %s", s.ID(), f, Dir)
			}
			// Per-master rows share a path on different machines.
			if other, dup := files[f]; dup && !(s.Machine != "" && strings.HasPrefix(other, s.Name+"/")) {
				t.Errorf("%s: file %s is also %s's", s.ID(), f, other)
			}
			files[f] = s.ID()
		}
	}

	api := ids["apiserver/master-1"]
	wantDNS := []string{"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local",
		"localhost", "master-1", "api.demo.example.com"}
	if !slices.Equal(api.DNSNames, wantDNS) {
		t.Errorf("apiserver DNS SANs %q, want %q", api.DNSNames, wantDNS)
	}
	// 127.0.0.1 is both built in and in ExtraAPIServerSANs: listed once.
	// ::1 is where the API server's readiness wait asks.
	wantIPs := []string{"10.96.0.1", "10.0.0.11", "127.0.0.1", "::1", "192.0.2.10"}
	if got := ipStrings(api.IPAddresses); !slices.Equal(got, wantIPs) {
		t.Errorf("apiserver IP SANs %q, want %q", got, wantIPs)
	}
	if ca := ids[KubernetesCA]; !slices.Equal(ca.Where, []Place{PlaceMaster, PlaceNode}) || !slices.Equal(ca.KeyWhere, []Place{PlaceMaster}) {
		t.Errorf("kubernetes-ca placement %v / key %v", ca.Where, ca.KeyWhere)
	}
	// Masters renew their leaves themselves: every CA key is on them, and
	// on no node.
	for _, id := range []string{EtcdCA, FrontProxyCA} {
		if s := ids[id]; !slices.Equal(s.KeyWhere, []Place{PlaceMaster}) {
			t.Errorf("%s: key goes to %v, want the masters", id, s.KeyWhere)
		}
	}
	if s := ids["admin"]; !slices.Equal(s.KeyWhere, []Place{PlaceHost}) {
		t.Errorf("admin: key goes to %v, want the host only", s.KeyWhere)
	}
	for _, s := range specs {
		if s.Kind == KindCA && slices.Contains(s.KeyWhere, PlaceNode) {
			t.Errorf("%s: a CA key goes to nodes", s.ID())
		}
		// A master leaf whose CA key stays on the host could not be
		// renewed on the machine.
		if s.Kind == KindCert && slices.Contains(s.Where, PlaceMaster) && !slices.Contains(ids[s.CA].KeyWhere, PlaceMaster) {
			t.Errorf("%s: on masters, but the key of its CA %s is not", s.ID(), s.CA)
		}
	}
	if s := ids["etcd-peer/master-2"]; s.CertFile != "/etc/kubernetes/pki/etcd/peer.crt" || s.CommonName != "master-2" ||
		!slices.Equal(s.Usages, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("etcd-peer/master-2 = %+v", s)
	}
	if s := ids["kubelet-client/master-0"]; s.CommonName != "system:node:master-0" || !slices.Equal(s.Organization, []string{"system:nodes"}) {
		t.Errorf("kubelet-client/master-0 = %+v", s)
	}
}

func TestTableDoesNotShareSlices(t *testing.T) {
	c := testCluster(1)
	a := Table(c)
	for i := range a {
		for j := range a[i].Where {
			a[i].Where[j] = "x"
		}
		for j := range a[i].Usages {
			a[i].Usages[j] = x509.ExtKeyUsageAny
		}
		for _, ip := range a[i].IPAddresses {
			ip[0] = 1
		}
	}
	b := Table(c)
	if b[0].Where[0] != PlaceMaster || b[4].Usages[0] != x509.ExtKeyUsageServerAuth || !b[4].IPAddresses[0].Equal(net.ParseIP("10.96.0.1")) ||
		!c.Masters[0].IP.Equal(net.ParseIP("10.0.0.10")) {
		t.Error("changing one table changed the next one or the cluster")
	}
}

func TestClusterValidate(t *testing.T) {
	c := testCluster(2)
	c.Name = ""
	c.DNSDomain = "Cluster.Local"
	c.APIServerServiceIP = nil
	c.ExtraAPIServerSANs = []string{"ok.example.com", "bad name"}
	c.Masters[1].Name = "master-0"
	c.Masters = append(c.Masters, Machine{Name: "a/b", IP: c.Masters[0].IP})
	err := c.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"name: must not be empty", "dnsDomain", "apiServerServiceIP", "extraAPIServerSANs[1]",
		`masters[1].name: "master-0" repeats masters[0]`, `masters[2].name: "a/b"`, "masters[2].ip: 10.0.0.10 repeats masters[0]"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := Generate(Cluster{}, testOptions(1)); err == nil {
		t.Error("Generate accepted an empty cluster")
	}
	if err := testCluster(3).Validate(); err != nil {
		t.Errorf("valid cluster: %v", err)
	}
}

func ipStrings(ips []net.IP) []string {
	var s []string
	for _, ip := range ips {
		s = append(s, ip.String())
	}
	return s
}
