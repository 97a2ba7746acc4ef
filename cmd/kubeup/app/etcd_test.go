package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot/snapshottest"
)

// A file that is not a whole snapshot is refused with exit status 2 and
// its name, before any cluster is looked at; so are missing flags.
func TestEtcdRestoreRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	good := snapshottest.Snapshot(2, 1)
	bad := filepath.Join(dir, "bad.db")
	os.WriteFile(bad, good[:len(good)-7], 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"etcd", "restore", "--from", bad, "--data-dir", dir}, bad + ": not a whole etcd snapshot"},
		{[]string{"etcd", "restore", "--from", filepath.Join(dir, "missing.db"), "--data-dir", dir}, "missing.db"},
		{[]string{"etcd", "restore", "--data-dir", dir}, "--from FILE is required"},
		{[]string{"etcd", "snapshot", "--data-dir", dir}, "--out FILE is required"},
	} {
		code, _, stderr := run(t, tc.args...)
		if code != 2 || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d, stderr %q, want 2 with %q", tc.args, code, stderr, tc.want)
		}
	}
	// A good file for a cluster that does not exist: past the check, the
	// error names the cluster.
	goodFile := filepath.Join(dir, "good.db")
	os.WriteFile(goodFile, good, 0o600)
	code, _, stderr := run(t, "etcd", "restore", "--from", goodFile, "--data-dir", dir, "--name", "nope")
	if code != 1 || !strings.Contains(stderr, `no such cluster "nope"`) {
		t.Errorf("no cluster: exit %d, %q", code, stderr)
	}
}
