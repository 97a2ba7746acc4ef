package cluster

import (
	"path/filepath"
	"strings"
	"testing"
)

// replace names a machine that exists, keeps etcd's quorum, and needs the
// cluster to exist: each refusal says which.
func TestCheckReplace(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	ha := testConfig(t, "ha", 3, 1, nil)
	single := testConfig(t, "one", 1, 1, nil)
	for _, tc := range []struct {
		c     string
		names []string
		want  string
	}{
		{"ha", nil, "--machine: name at least one"},
		{"ha", []string{"node-7"}, `--machine "node-7": cluster "ha" has no such machine (it has master-0, master-1, master-2, node-0)`},
		{"ha", []string{"master-0", "master-1"}, "replacing 2 of 3 masters at once would lose etcd's quorum"},
		{"one", []string{"master-0"}, "replacing 1 of 1 masters"},
		{"ha", []string{"master-1"}, `no such cluster "ha"`},
		{"ha", []string{"node-0"}, `no such cluster "ha"`},
	} {
		c := ha
		if tc.c == "one" {
			c = single
		}
		err := CheckReplace(c, data, tc.names)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %v: %v, want an error with %q", tc.c, tc.names, err, tc.want)
		}
	}
	if _, err := prepareState(ha, data); err != nil {
		t.Fatal(err)
	}
	st, err := prepareState(ha, data)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.save(Dir(data, "ha")); err != nil {
		t.Fatal(err)
	}
	for _, names := range [][]string{{"master-1"}, {"node-0"}, {"master-2", "node-0"}} {
		if err := CheckReplace(ha, data, names); err != nil {
			t.Errorf("%v: %v", names, err)
		}
	}
}
