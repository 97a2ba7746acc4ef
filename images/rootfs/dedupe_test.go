package rootfs

import (
	"bytes"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestDedupe(t *testing.T) {
	root := t.TempDir()
	big := bytes.Repeat([]byte("kubeup"), 400)
	other := append(bytes.Repeat([]byte("kubeup"), 399), []byte("kubeuq")...) // same size, other bytes
	write := func(p string, data []byte, mode os.FileMode) {
		t.Helper()
		full := filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, data, mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(full, mode); err != nil {
			t.Fatal(err)
		}
	}
	write("usr/local/bin/tool", big, 0o755)
	write("var/lib/snap/1/fs/usr/local/bin/tool", big, 0o755) // linked
	write("var/lib/snap/2/fs/tool", big, 0o755)               // linked
	write("var/lib/snap/3/fs/tool", big, 0o644)               // other mode: kept
	write("var/lib/snap/4/fs/tool", other, 0o755)             // other content: kept
	write("var/lib/snap/5/fs/small", big[:100], 0o755)        // below the minimum
	write("var/lib/snap/6/fs/small", big[:100], 0o755)
	write("etc/tool", big, 0o755)           // not under a deduplicated directory
	write("usr/local/bin/copy", big, 0o755) // kept: a copy on purpose

	got, err := Dedupe(root, []string{"usr", "var/lib", "missing"}, 1000, "usr/local/bin/copy")
	if err != nil {
		t.Fatal(err)
	}
	if want := (Deduplicated{Files: 2, Bytes: 2 * int64(len(big))}); got != want {
		t.Errorf("Dedupe = %+v, want %+v", got, want)
	}
	ino := func(p string) uint64 {
		fi, err := os.Stat(filepath.Join(root, p))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t).Ino
	}
	same := map[string]bool{
		"var/lib/snap/1/fs/usr/local/bin/tool": true, "var/lib/snap/2/fs/tool": true,
		"var/lib/snap/3/fs/tool": false, "var/lib/snap/4/fs/tool": false, "etc/tool": false,
		"usr/local/bin/copy": false,
	}
	for p, want := range same {
		if got := ino(p) == ino("usr/local/bin/tool"); got != want {
			t.Errorf("%s linked to usr/local/bin/tool = %v, want %v", p, got, want)
		}
	}
	if ino("var/lib/snap/5/fs/small") == ino("var/lib/snap/6/fs/small") {
		t.Error("files below the minimum size were linked")
	}
	if data, _ := os.ReadFile(filepath.Join(root, "var/lib/snap/2/fs/tool")); !bytes.Equal(data, big) {
		t.Error("linked file lost its content")
	}
	// A second pass finds nothing more to do.
	if again, err := Dedupe(root, []string{"usr", "var/lib"}, 1000, "usr/local/bin/copy"); err != nil || again.Files != 0 {
		t.Errorf("second Dedupe = %+v, %v; want nothing", again, err)
	}
	if left, _ := filepath.Glob(filepath.Join(root, "var/lib/snap/*/fs/*.kubeup-dedupe")); len(left) > 0 {
		t.Errorf("temporary links left: %v", left)
	}
}
