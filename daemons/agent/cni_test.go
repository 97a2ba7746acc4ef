package agent

import (
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"kubeup.dev/kubeup/test/golden"
)

func TestCNIConfigGolden(t *testing.T) {
	data, err := CNIConfig(netip.MustParsePrefix("10.244.1.0/24"))
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, CNIConfFile, data)
	if _, err := CNIConfig(netip.Prefix{}); err == nil {
		t.Error("invalid prefix accepted")
	}
}

func TestWriteFileIfChanged(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "net.d", CNIConfFile)
	for i, tc := range []struct {
		data  string
		wrote bool
	}{{"a", true}, {"a", false}, {"b", true}} {
		wrote, err := writeFileIfChanged(path, []byte(tc.data), 0o644)
		if err != nil || wrote != tc.wrote {
			t.Errorf("write %d: wrote=%v err=%v, want wrote=%v", i, wrote, err, tc.wrote)
		}
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temp files left behind: %v", entries)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
		t.Errorf("mode %v", fi.Mode())
	}
}
