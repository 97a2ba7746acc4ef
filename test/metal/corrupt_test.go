package metal

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"kubeup.dev/kubeup/daemons/installer"
	"kubeup.dev/kubeup/infra/metal"
	"kubeup.dev/kubeup/test/e2e"
)

// TestE2EMetalCorruptImage: a machine whose image does not match the
// digest its boot script names refuses to make its disk bootable, says why
// on its console and tells the server. The real kernel and initrd with the
// installer, booted as iPXE would boot them (the command line is the boot
// script's), against the real boot server serving a corrupt image.
func TestE2EMetalCorruptImage(t *testing.T) {
	if os.Getenv("KUBEUP_E2E_METAL") != "1" {
		t.Skip("boots the installer in QEMU: make e2e-metal (KUBEUP_E2E_METAL=1)")
	}
	cache := os.Getenv("KUBEUP_CACHE_DIR")
	if cache == "" {
		cache = filepath.Join(os.Getenv("HOME"), ".cache", "kubeup")
	}
	raws, _ := filepath.Glob(filepath.Join(cache, "vm-images", "kubeup-node-*.raw"))
	if len(raws) == 0 {
		t.Fatalf("no raw node image in %s/vm-images: TestE2EMetal (make e2e-metal) builds it", cache)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	dir := t.TempDir()
	assets, err := metal.PrepareAssets(ctx, cache, raws[len(raws)-1], filepath.Join(e2e.RepoRoot(), "bin", "kubeup-installer"), io.Discard)
	if err != nil {
		t.Fatal(err)
	}

	// The "image": 16 MiB whose digest is not the one the script names.
	img := make([]byte, 16<<20)
	rand.Read(img)
	zimg := filepath.Join(dir, "image.raw.zst")
	enc, _ := zstd.NewWriter(nil)
	os.WriteFile(zimg, enc.EncodeAll(img, nil), 0o644)
	wrong := strings.Repeat("ab", 32)
	bad := &metal.RoleAssets{Kernel: assets.Kernel, Initrd: assets.Initrd, Image: zimg, Size: int64(len(img)), SHA256: wrong, Cmdline: "console=ttyS0"}

	// The machine's disk holds an older system: its head must not survive
	// as if bootable, and the new image's head must not be written.
	diskFile := filepath.Join(dir, "disk.raw")
	old := bytes.Repeat([]byte{0xaa}, 1<<20)
	os.WriteFile(diskFile, old, 0o644)
	os.Truncate(diskFile, 64<<20)

	mac, _ := net.ParseMAC("52:54:00:77:0b:ad")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var progress syncBuffer
	// The guest reaches the server at 10.0.2.100:80 (QEMU's guestfwd to
	// this listener); it is the machine's own address to the server.
	srv, err := metal.New(metal.Options{
		URL: "http://10.0.2.100", Assets: map[string]*metal.RoleAssets{"node": bad}, Progress: &progress,
		Machines: []metal.Machine{{Name: "bad", Role: "node", MAC: mac, Address: netip.MustParsePrefix("10.0.2.15/24"), Gateway: netip.MustParseAddr("10.0.2.2"),
			Seed: map[string][]byte{"meta-data": []byte("local-hostname: bad\n"), "user-data": []byte("#cloud-config\n"), "network-config": []byte("version: 2\n")}}},
		Neighbor: func(netip.Addr) (net.HardwareAddr, error) { return mac, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	go srv.ServeListener(sctx, ln)

	// The command line of the machine's boot script, as iPXE would boot it.
	resp, err := http.Get("http://" + ln.Addr().String() + "/ipxe/" + mac.String())
	if err != nil {
		t.Fatal(err)
	}
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`(?m)^kernel \S+ (.*) \|\| goto failed$`).FindSubmatch(script)
	if m == nil {
		t.Fatalf("no kernel line in the boot script:\n%s", script)
	}
	console := filepath.Join(dir, "console.log")
	q := exec.CommandContext(ctx, "qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-m", "1024", "-smp", "1",
		"-display", "none", "-vga", "none", "-serial", "file:"+console, "-no-reboot",
		"-kernel", assets.Kernel, "-initrd", assets.Initrd, "-append", string(m[1]),
		"-drive", "if=virtio,file="+diskFile+",format=raw",
		"-netdev", fmt.Sprintf("user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:80-tcp:%s", ln.Addr()),
		"-device", "virtio-net-pci,netdev=n0,mac="+mac.String())
	if err := q.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = q.Process.Kill(); _ = q.Wait() }() // by its PID

	want := "FAILED: the image's sha256 is "
	deadline := time.Now().Add(8 * time.Minute)
	for {
		con, _ := os.ReadFile(console)
		if strings.Contains(string(con), want) {
			t.Logf("console:\n%s", tailLines(string(con), 12))
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			t.Fatalf("no %q on the console:\n%s\nserver:\n%s", want, tailLines(string(con), 40), progress.String())
		}
		time.Sleep(2 * time.Second)
	}
	_ = q.Process.Kill()
	_ = q.Wait()

	st := srv.Status()[0]
	if st.Last.Event != installer.EventFailed || !strings.Contains(st.Last.Detail, "want "+wrong+": the disk is left unbootable") || !st.Installed.IsZero() {
		t.Errorf("the server's view of the machine: %+v", st)
	}
	if !strings.Contains(progress.String(), "bad: failed the image's sha256 is") {
		t.Errorf("the server's progress lacks the failure:\n%s", progress.String())
	}
	if strings.Contains(progress.String(), "bad fetches its seed") {
		t.Errorf("the seed was fetched for a refused image:\n%s", progress.String())
	}
	f, _ := os.Open(diskFile)
	defer f.Close()
	head := make([]byte, 1<<20)
	f.ReadAt(head, 0)
	if !bytes.Equal(head, make([]byte, 1<<20)) {
		t.Errorf("the disk's head is not zero after a refused image: the older system or the corrupt one could boot")
	}
}

// syncBuffer is a bytes.Buffer for a writer and a reader on two goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
