package etcdsnapshot

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot/snapshottest"
)

func write(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// A good snapshot passes; each kind of damage is refused with ErrCorrupt
// and a reason that says what is wrong.
func TestVerify(t *testing.T) {
	t.Parallel()
	good := snapshottest.Snapshot(5, 1)
	info, err := Verify(write(t, good))
	if err != nil {
		t.Fatalf("good snapshot: %v", err)
	}
	if info.Size != int64(len(good)) || len(info.SHA256) != 64 {
		t.Errorf("info %+v", info)
	}

	flip := func(off int) []byte {
		b := bytes.Clone(good)
		b[off] ^= 0x40
		return b
	}
	badMagic := bytes.Clone(good[:len(good)-32])
	badMagic[snapshottest.MetaMagicOffset] = 0
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"truncated by a page", append(bytes.Clone(good[:len(good)-32-snapshottest.PageSize]), good[len(good)-32:]...), "sha256"},
		{"truncated mid-page", good[:len(good)-1000], "is not a database plus the 32-byte sha256"},
		{"without its sha256", good[:len(good)-32], "is not a database plus the 32-byte sha256"},
		{"flipped data byte", flip(3*snapshottest.PageSize + 17), "sha256"},
		{"flipped sha256 byte", flip(len(good) - 3), "sha256"},
		// Resealed, so only the meta page check can see it.
		{"wrong magic", snapshottest.Seal(badMagic), "magic 0xed0cda00, want 0xed0cdaed"},
		{"flipped meta byte", snapshottest.Seal(func() []byte { b := bytes.Clone(good[:len(good)-32]); b[snapshottest.PageSize+60] ^= 1; return b }()), "meta page 1: checksum"},
	} {
		_, err := Verify(write(t, tc.data))
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrCorrupt with %q", tc.name, err, tc.want)
		}
	}
	if _, err := Verify(filepath.Join(t.TempDir(), "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

// Save leaves a verified file under its name, or nothing (and no
// temporary file) when the stream breaks or is not a whole snapshot; a
// good file already there survives a failed save.
func TestSave(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "snapshots")
	good := snapshottest.Snapshot(3, 9)
	info, err := Save(dir, "a.db", bytes.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a.db")); !bytes.Equal(got, good) || info.Size != int64(len(good)) {
		t.Errorf("saved %d bytes, info %+v", len(got), info)
	}
	if st, _ := os.Stat(filepath.Join(dir, "a.db")); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v", st.Mode())
	}

	_, err = Save(dir, "a.db", bytes.NewReader(good[:len(good)-100]))
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("truncated stream: %v", err)
	}
	broken := io.MultiReader(bytes.NewReader(good[:5000]), iotest.ErrReader(io.ErrUnexpectedEOF))
	if _, err := Save(dir, "b.db", broken); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("broken stream: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "a.db" {
		t.Errorf("left behind: %v", entries)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "a.db")); !bytes.Equal(got, good) {
		t.Error("a failed save changed the good file")
	}
}
