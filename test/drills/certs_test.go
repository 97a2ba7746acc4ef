package drills

import (
	"slices"
	"testing"
	"time"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
)

func TestCertWatch(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1_000_000, 0).UTC()
	const lifetime = 30 * time.Minute
	machines := []cluster.MachineState{{Name: "master-0", Role: config.RoleMaster}, {Name: "node-0", Role: config.RoleNode}}
	expected := kubeletCertificates(machines)
	if len(expected) != 3 || expected[0].Path != "/var/lib/kubelet/pki/kubelet-client-current.pem" {
		t.Fatalf("kubelet certificates %v", expected)
	}
	names := []string{"master-0", "node-0"}
	w := newCertWatch(lifetime, expected)
	if got := w.pending(names); !slices.Equal(got, []string{"master-0:*", "node-0:*"}) {
		t.Errorf("before any look: %v", got)
	}
	ci := func(path string, notAfter time.Time) agent.CertificateInfo {
		return agent.CertificateInfo{Path: path, Subject: "CN=x", NotAfter: notAfter}
	}
	const apiserver, ca, nodeClient, nodeServer, masterClient = "/etc/kubernetes/pki/apiserver.crt", "/etc/kubernetes/pki/ca.crt",
		"/var/lib/kubelet/pki/kubelet-client-current.pem", "/var/lib/kubelet/pki/kubelet-server-current.pem", "/var/lib/kubelet/pki/kubelet-client-current.pem"
	w.observe("master-0", t0, []agent.CertificateInfo{ci(apiserver, t0.Add(20*time.Minute)), ci(ca, t0.Add(10*365*24*time.Hour))})
	w.observe("node-0", t0, []agent.CertificateInfo{ci(nodeClient, t0.Add(25*time.Minute)), ci(nodeServer, t0.Add(25*time.Minute))})
	want := []string{"master-0:" + apiserver, "master-0:" + masterClient + " (missing)", "node-0:" + nodeClient, "node-0:" + nodeServer}
	if got := w.pending(names); !slices.Equal(got, want) {
		t.Errorf("pending %q\nwant %q", got, want)
	}
	if w.watched() != 4 {
		t.Errorf("watched %d, want 4 (the CA is not)", w.watched())
	}

	// The API server's certificate is renewed (twice over two looks), the
	// master's kubelet rotates for the first time, node-0's client too.
	t1 := t0.Add(15 * time.Minute)
	w.observe("master-0", t1, []agent.CertificateInfo{ci(apiserver, t1.Add(30*time.Minute)), ci(masterClient, t1.Add(30*time.Minute))})
	w.observe("node-0", t1, []agent.CertificateInfo{ci(nodeClient, t1.Add(30*time.Minute)), ci(nodeServer, t0.Add(25*time.Minute))})
	t2 := t1.Add(20 * time.Minute)
	w.observe("master-0", t2, []agent.CertificateInfo{ci(apiserver, t2.Add(30*time.Minute)), ci(masterClient, t1.Add(30*time.Minute))})
	if got := w.pending(names); !slices.Equal(got, []string{"node-0:" + nodeServer}) {
		t.Errorf("pending %q, want the node's serving certificate only", got)
	}
	if w.renewals != 3 {
		t.Errorf("renewals %d, want 3", w.renewals)
	}
	// A file that disappears does not count as renewed; nor does one
	// that reappears unchanged.
	w.observe("node-0", t2, nil)
	w.observe("node-0", t2, []agent.CertificateInfo{ci(nodeServer, t0.Add(25*time.Minute))})
	if len(w.pending(names)) != 1 {
		t.Errorf("pending %q", w.pending(names))
	}
	w.observe("node-0", t2, []agent.CertificateInfo{ci(nodeServer, t2.Add(30*time.Minute))})
	if got := w.pending(names); len(got) != 0 || w.renewals != 4 {
		t.Errorf("pending %q, renewals %d", got, w.renewals)
	}
}

func TestOutage(t *testing.T) {
	t.Parallel()
	t0 := time.Unix(1000, 0)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	var o outage
	for s, ok := range []bool{true, true, false, false, false, true, true, false, true} {
		o.probe(at(s), ok)
	}
	if o.total != 4*time.Second || o.count != 2 {
		t.Errorf("total %v count %d, want 4s in 2 outages", o.total, o.count)
	}
	o.probe(at(10), false)
	if got := o.end(at(12)); got != 6*time.Second || o.count != 3 {
		t.Errorf("closed at the end: %v, %d", got, o.count)
	}
	var none outage
	for s := range 5 {
		none.probe(at(s), true)
	}
	if none.end(at(5)) != 0 || none.count != 0 {
		t.Errorf("no failure: %v %d", none.total, none.count)
	}
}
