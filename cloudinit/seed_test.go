package cloudinit

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"kubeup.dev/kubeup/test/golden"
)

func exampleSeed(t *testing.T) Seed {
	t.Helper()
	ud, err := exampleConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	md, err := exampleMetaData().Render()
	if err != nil {
		t.Fatal(err)
	}
	nc, err := exampleNetworkConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	return Seed{UserData: ud, MetaData: md, NetworkConfig: nc}
}

func writeSeed(t *testing.T, s Seed) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "seed.iso")
	if err := WriteSeed(p, s); err != nil {
		t.Fatal(err)
	}
	return p
}

func isoinfo(t *testing.T, args ...string) []byte {
	t.Helper()
	bin := needTool(t, "isoinfo", "genisoimage")
	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("isoinfo %s: %v\n%s", strings.Join(args, " "), err, exitStderr(err))
	}
	return out
}

func TestWriteSeedIsoinfo(t *testing.T) {
	s := exampleSeed(t)
	p := writeSeed(t, s)

	info, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if info.Size()%isoBlockSize != 0 {
		t.Errorf("image is %d bytes, not a whole number of 2048-byte blocks", info.Size())
	}
	if info.Mode().Perm() != 0o644 {
		t.Errorf("image mode %v, want 0644", info.Mode().Perm())
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".seed.iso.tmp-*")); len(left) != 0 {
		t.Errorf("temporary files left behind: %v", left)
	}

	d := string(isoinfo(t, "-d", "-i", p))
	for _, want := range []string{"Volume id: cidata\n", "Rock Ridge signatures version 1 found", "Joliet with UCS level 3 found"} {
		if !strings.Contains(d, want) {
			t.Errorf("isoinfo -d lacks %q:\n%s", want, d)
		}
	}
	if bs := "Logical block size is: 2048"; !strings.Contains(d, bs) {
		t.Errorf("isoinfo -d lacks %q", bs)
	}
	if want := "Volume size is: " + strconv.FormatInt(info.Size()/isoBlockSize, 10) + "\n"; !strings.Contains(d, want) {
		t.Errorf("declared volume size does not match the file size (%d bytes):\n%s", info.Size(), d)
	}

	// blkid is how cloud-init finds the seed (blkid -tLABEL=cidata); -p probes a plain file too.
	if blkid, err := exec.LookPath("blkid"); err == nil {
		out, err := exec.Command(blkid, "-p", "-o", "export", p).Output()
		if err != nil {
			t.Fatalf("blkid: %v\n%s", err, exitStderr(err))
		}
		for _, want := range []string{"\nLABEL=cidata\n", "\nTYPE=iso9660\n"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("blkid -p lacks %q:\n%s", strings.TrimSpace(want), out)
			}
		}
	} else {
		t.Log("blkid not found (Debian package util-linux); label probe not checked")
	}

	wantNames := []string{"/meta-data", "/network-config", "/user-data"}
	for _, ext := range []string{"-R", "-J"} {
		names := strings.Fields(string(isoinfo(t, ext, "-f", "-i", p)))
		slices.Sort(names)
		if !slices.Equal(names, wantNames) {
			t.Errorf("isoinfo %s -f lists %q, want %q", ext, names, wantNames)
		}
		for name, want := range map[string][]byte{"/user-data": s.UserData, "/meta-data": s.MetaData, "/network-config": s.NetworkConfig} {
			got := isoinfo(t, ext, "-i", p, "-x", name)
			if !bytes.Equal(got, want) {
				t.Errorf("isoinfo %s -x %s returned %d bytes that differ from the %d given", ext, name, len(got), len(want))
			}
		}
	}

	// Rock Ridge attributes are normalised: root-owned, 0644 files in a 0755 directory, dated 1970-01-01.
	listing := string(isoinfo(t, "-R", "-l", "-i", p))
	for _, line := range strings.Split(listing, "\n") {
		if strings.Contains(line, "-data") || strings.Contains(line, "network-config") {
			if !strings.HasPrefix(line, "-rw-r--r--   1    0    0") || !strings.Contains(line, "Jan  1 1970") {
				t.Errorf("unexpected attributes: %q", line)
			}
		}
		if strings.HasSuffix(strings.TrimSpace(line), " .") && !strings.HasPrefix(line, "drwxr-xr-x") {
			t.Errorf("root directory attributes: %q", line)
		}
	}
}

func TestSeedRoundTrip(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	big := make([]byte, 100_000) // spans many blocks
	for i := range big {
		big[i] = byte(rng.UintN(256))
	}
	for name, s := range map[string]Seed{
		"full":    {UserData: big, MetaData: []byte("instance-id: a\n"), NetworkConfig: []byte("version: 2\n"), VendorData: []byte("#cloud-config\n")},
		"minimal": {UserData: []byte("#cloud-config\n"), MetaData: []byte("instance-id: b\n")},
		"empty":   {},
	} {
		t.Run(name, func(t *testing.T) {
			p := writeSeed(t, s)
			got, err := ReadSeed(p)
			if err != nil {
				t.Fatal(err)
			}
			// user-data and meta-data always exist (NoCloud needs both); the others only when given.
			want := s
			want.UserData = append([]byte{}, s.UserData...)
			want.MetaData = append([]byte{}, s.MetaData...)
			for _, c := range []struct {
				name      string
				got, want []byte
			}{
				{"user-data", got.UserData, want.UserData},
				{"meta-data", got.MetaData, want.MetaData},
				{"network-config", got.NetworkConfig, want.NetworkConfig},
				{"vendor-data", got.VendorData, want.VendorData},
			} {
				if !bytes.Equal(c.got, c.want) || (c.got == nil) != (c.want == nil) {
					t.Errorf("%s: got %d bytes (nil %v), want %d (nil %v)", c.name, len(c.got), c.got == nil, len(c.want), c.want == nil)
				}
			}
			if name == "full" {
				if got := isoinfo(t, "-R", "-i", p, "-x", "/user-data"); !bytes.Equal(got, big) {
					t.Error("isoinfo extracts a different multi-block user-data")
				}
			}
		})
	}
}

func TestReadSeedRejectsOtherVolumes(t *testing.T) {
	if _, err := ReadSeed(filepath.Join(t.TempDir(), "missing.iso")); err == nil {
		t.Error("ReadSeed of a missing file succeeded")
	}
	p := filepath.Join(t.TempDir(), "junk.iso")
	if err := os.WriteFile(p, bytes.Repeat([]byte{0}, 40*isoBlockSize), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSeed(p); err == nil {
		t.Error("ReadSeed of a blank image succeeded")
	}
}

func TestWriteSeedReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "seed.iso")
	if err := os.WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteSeed(p, Seed{MetaData: []byte("instance-id: x\n")}); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "seed.iso" {
		t.Errorf("directory holds %v, want only seed.iso", entries)
	}
	if err := WriteSeed(filepath.Join(dir, "no-such-dir", "seed.iso"), Seed{}); err == nil {
		t.Error("WriteSeed into a missing directory succeeded")
	}
}

// TestWriteSeedDeterministic writes the same seed twice here and once more in a child process with another time
// zone and umask, at least a second later (so ctime and the clock differ); all three images must be identical,
// and match the hash recorded in testdata.
func TestWriteSeedDeterministic(t *testing.T) {
	if os.Getenv("KUBEUP_SEED_CHILD") != "" {
		return // the child's work is done by TestWriteSeedDeterministicChild
	}
	s := exampleSeed(t)
	a, err := os.ReadFile(writeSeed(t, s))
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(writeSeed(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, b) {
		t.Fatal("two writes of the same seed differ")
	}
	// The hash pins the image across machines; it changes only when the content or the ISO writer (go-diskfs
	// version, normalisation) changes, and then the new image should be checked with the tests below.
	golden.Assert(t, "seed.iso.sha256", fmt.Appendf(nil, "%x\n", sha256.Sum256(a)))

	time.Sleep(1100 * time.Millisecond)
	out := filepath.Join(t.TempDir(), "child.iso")
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteSeedDeterministicChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KUBEUP_SEED_CHILD="+out, "TZ=America/St_Johns")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("child: %v\n%s", err, b)
	}
	c, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a, c) {
		t.Fatalf("a write in another time zone, umask and second differs (sha256 %x vs %x)", sha256.Sum256(a), sha256.Sum256(c))
	}
}

func TestWriteSeedDeterministicChild(t *testing.T) {
	out := os.Getenv("KUBEUP_SEED_CHILD")
	if out == "" {
		t.Skip("helper for TestWriteSeedDeterministic")
	}
	syscall.Umask(0o077)
	if err := WriteSeed(out, exampleSeed(t)); err != nil {
		t.Fatal(err)
	}
}

// TestWriteSeedXorriso reads the image with a second, independent ISO 9660 implementation (libisofs, through
// xorriso's osirrox), when it is installed.
func TestWriteSeedXorriso(t *testing.T) {
	bin, err := exec.LookPath("xorriso")
	if err != nil {
		t.Skip("xorriso not installed (Debian package xorriso); isoinfo and ReadSeed still check the image")
	}
	s := exampleSeed(t)
	p := writeSeed(t, s)
	dst := filepath.Join(t.TempDir(), "x")
	cmd := exec.Command(bin, "-osirrox", "on", "-indev", p, "-extract", "/", dst)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xorriso: %v\n%s", err, out)
	}
	checkDir(t, dst, s)
}

// TestIntegrationSeedMount loop-mounts the image, as cloud-init does, when this host allows it.
func TestIntegrationSeedMount(t *testing.T) {
	if testing.Short() {
		t.Skip("loop mount skipped under -short")
	}
	fsTypes, err := os.ReadFile("/proc/filesystems")
	if err != nil || !bytes.Contains(fsTypes, []byte("\tiso9660\n")) {
		t.Skip("this kernel has no iso9660 filesystem (not in /proc/filesystems); cannot loop-mount")
	}
	if os.Geteuid() != 0 {
		t.Skip("loop mount needs root")
	}
	s := exampleSeed(t)
	p := writeSeed(t, s)
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "iso9660", "-o", "loop,ro", p, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount -o loop,ro not permitted here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	checkDir(t, mnt, s)
}

func checkDir(t *testing.T, dir string, s Seed) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if want := []string{"meta-data", "network-config", "user-data"}; !slices.Equal(names, want) {
		t.Errorf("%s holds %q, want %q", dir, names, want)
	}
	for name, want := range map[string][]byte{"user-data": s.UserData, "meta-data": s.MetaData, "network-config": s.NetworkConfig} {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what was written", name)
		}
	}
}

// TestReadSeedGenisoimage reads a seed made the classic way (genisoimage -V cidata -J -r), so ReadSeed also works
// on images kubeup did not write.
func TestReadSeedGenisoimage(t *testing.T) {
	bin := needTool(t, "genisoimage", "genisoimage")
	s := exampleSeed(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{"user-data": s.UserData, "meta-data": s.MetaData, "network-config": s.NetworkConfig} {
		if err := os.WriteFile(filepath.Join(src, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "seed.iso")
	if out, err := exec.Command(bin, "-quiet", "-output", p, "-volid", "cidata", "-joliet", "-rock", src).CombinedOutput(); err != nil {
		t.Fatalf("genisoimage: %v\n%s", err, out)
	}
	got, err := ReadSeed(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.UserData, s.UserData) || !bytes.Equal(got.MetaData, s.MetaData) ||
		!bytes.Equal(got.NetworkConfig, s.NetworkConfig) || got.VendorData != nil {
		t.Errorf("ReadSeed of a genisoimage seed returned different content")
	}
}
