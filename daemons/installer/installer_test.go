package installer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func testParams() *Params {
	u, _ := url.Parse("http://192.168.10.2:8080")
	mac, _ := net.ParseMAC("52:54:00:aa:00:01")
	return &Params{Server: u, Machine: "cp1", MAC: mac, Address: netip.MustParsePrefix("192.168.10.10/24"),
		Gateway: netip.MustParseAddr("192.168.10.1"), Image: "/assets/master/image.raw.zst",
		SHA256: strings.Repeat("ab", 32), Size: 1 << 30, Token: "t0k"}
}

func TestCmdlineRoundTrip(t *testing.T) {
	p := testParams()
	got, err := ParseCmdline("BOOT_IMAGE=/vmlinuz ro console=ttyS0 " + p.Cmdline() + " quiet")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, p) {
		t.Errorf("got %+v\nwant %+v", got, p)
	}
	if u := got.URL("/v1/report/x"); u != "http://192.168.10.2:8080/v1/report/x" {
		t.Errorf("URL %s", u)
	}
}

func TestCmdlineNamesEveryProblem(t *testing.T) {
	_, err := ParseCmdline("kubeup.server=ftp://x kubeup.mac=zz kubeup.address=10.0.0.1 kubeup.gateway=g kubeup.disk=sda kubeup.image=x kubeup.sha256=12 kubeup.size=-1")
	if err == nil {
		t.Fatal("no error")
	}
	for _, k := range []string{ParamServer, ParamMachine, ParamMAC, ParamAddress, ParamGateway, ParamDisk, ParamImage, ParamSHA256, ParamSize, ParamToken} {
		if !strings.Contains(err.Error(), k+":") {
			t.Errorf("error does not name %s: %v", k, err)
		}
	}
}

func fakeBlock(t *testing.T, disks map[string][3]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, v := range disks {
		d := filepath.Join(dir, name)
		os.MkdirAll(d, 0o755)
		for i, f := range []string{"removable", "ro", "size"} {
			os.WriteFile(filepath.Join(d, f), []byte(v[i]+"\n"), 0o644)
		}
	}
	return dir
}

func TestChooseDisk(t *testing.T) {
	sys := fakeBlock(t, map[string][3]string{
		"loop0": {"0", "0", "100"}, "sr0": {"1", "0", "100"}, "sdb": {"1", "0", "100"}, // USB stick
		"vdb": {"0", "0", "2048"}, "vda": {"0", "1", "2048"}, "nvme0n1": {"0", "0", "0"}, "sdc": {"0", "0", "4096"},
	})
	got, err := ChooseDisk(sys, "/dev", "")
	if err != nil || got != "/dev/sdc" {
		t.Errorf("first fixed, writable, non-empty disk: %s %v; want /dev/sdc", got, err)
	}
	os.Symlink(filepath.Join(sys, "vdb"), filepath.Join(t.TempDir(), "x"))
	link := filepath.Join(t.TempDir(), "by-id-disk")
	os.Symlink(filepath.Join(sys, "vdb"), link) // stands for /dev/disk/by-id/... → ../../vdb
	if got, err := ChooseDisk(sys, "/dev", link); err != nil || got != "/dev/vdb" {
		t.Errorf("named disk: %s %v", got, err)
	}
	if _, err := ChooseDisk(sys, "/dev", "/nonexistent"); err == nil {
		t.Error("a missing disk was chosen")
	}
	empty := fakeBlock(t, map[string][3]string{"sda": {"1", "0", "100"}})
	if _, err := ChooseDisk(empty, "/dev", ""); err == nil || !strings.Contains(err.Error(), "sda (removable 1") {
		t.Errorf("no fixed disk: %v", err)
	}
}

func TestPartitionDevice(t *testing.T) {
	for disk, want := range map[string]string{"/dev/sda": "/dev/sda2", "/dev/vda": "/dev/vda2", "/dev/nvme0n1": "/dev/nvme0n1p2", "/dev/mmcblk0": "/dev/mmcblk0p2"} {
		if got := PartitionDevice(disk, 2); got != want {
			t.Errorf("%s: %s, want %s", disk, got, want)
		}
	}
}

// recorder is a disk that remembers its writes in order.
type recorder struct {
	data   []byte
	writes []int64
	syncs  int
}

func (r *recorder) WriteAt(p []byte, off int64) (int, error) {
	if need := off + int64(len(p)); need > int64(len(r.data)) {
		r.data = append(r.data, make([]byte, need-int64(len(r.data)))...)
	}
	copy(r.data[off:], p)
	r.writes = append(r.writes, off)
	return len(p), nil
}
func (r *recorder) Sync() error { r.syncs++; return nil }

func image(n int) ([]byte, string) {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/4096)
	}
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func TestWriteImageHeadLast(t *testing.T) {
	img, sum := image(3*headerSize + 12345)
	d := &recorder{data: bytes.Repeat([]byte{0xee}, 4*headerSize)} // an old system
	var seen []int64
	if err := WriteImage(d, bytes.NewReader(img), int64(len(img)), sum, 0, func(n int64) { seen = append(seen, n) }); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(d.data[:len(img)], img) {
		t.Error("the disk does not hold the image")
	}
	if d.writes[0] != 0 || d.writes[len(d.writes)-1] != 0 {
		t.Errorf("writes at %v: want the head cleared first and written last", d.writes)
	}
	if len(seen) == 0 || seen[len(seen)-1] != int64(len(img)) {
		t.Errorf("progress %v", seen)
	}
}

func TestWriteImageRefusesABadImage(t *testing.T) {
	img, sum := image(2*headerSize + 100)
	for name, tc := range map[string]struct {
		data []byte
		size int64
		sum  string
		want string
	}{
		"corrupt":   {append(append([]byte{}, img[:len(img)-1]...), img[len(img)-1]^1), int64(len(img)), sum, "sha256"},
		"truncated": {img[:len(img)-50], int64(len(img)), sum, "ended at"},
		"too long":  {append(append([]byte{}, img...), 1, 2, 3), int64(len(img)), sum, "longer than"},
		"tiny":      {img[:100], 100, sum, "smaller than"},
	} {
		t.Run(name, func(t *testing.T) {
			d := &recorder{data: bytes.Repeat([]byte{0xee}, 3*headerSize)}
			err := WriteImage(d, bytes.NewReader(tc.data), tc.size, tc.sum, time.Hour, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if tc.size >= headerSize && !bytes.Equal(d.data[:headerSize], make([]byte, headerSize)) {
				t.Error("the disk's head is not cleared: an old or half-written system could boot")
			}
		})
	}
}
