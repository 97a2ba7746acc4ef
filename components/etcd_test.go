package components

import "testing"

// A master that replaces one (kubeup replace) joins the running etcd
// cluster; the others, at first boot, form it together.
func TestEtcdInitialClusterState(t *testing.T) {
	c := testCluster()
	for _, tc := range []struct {
		join bool
		want string
	}{{false, "new"}, {true, "existing"}} {
		m := c.Masters[1]
		m.EtcdJoin = tc.join
		f := Etcd{}.Flags(Context{Cluster: c, Machine: m})
		if got := f["initial-cluster-state"]; got != tc.want {
			t.Errorf("EtcdJoin %v: initial-cluster-state %q, want %q", tc.join, got, tc.want)
		}
		// The member list is the same either way: the replaced master
		// keeps its name and address.
		if got, want := f["initial-cluster"], EtcdMemberFor(Context{Cluster: c, Machine: c.Masters[1]}).InitialCluster; got != want {
			t.Errorf("EtcdJoin %v: initial-cluster %q, want %q", tc.join, got, want)
		}
	}
}
