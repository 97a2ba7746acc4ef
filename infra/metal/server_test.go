package metal

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/pin/tftp/v3"

	"kubeup.dev/kubeup/daemons/installer"
)

// testServer boots a master and a node; requests come from 127.0.0.1,
// which the fake neighbour table says is the MAC in *from.
func testServer(t *testing.T, from *string) (*Server, *httptest.Server, *strings.Builder) {
	t.Helper()
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o644)
		return p
	}
	assets := map[string]*RoleAssets{}
	for _, role := range []string{"master", "node"} {
		assets[role] = &RoleAssets{Kernel: write(role+"-k", role+" kernel"), Initrd: write(role+"-i", role+" initrd"), Image: write(role+"-z", role+" image"),
			Size: 1 << 30, SHA256: strings.Repeat("0f", 32), Cmdline: "root=LABEL=kubeup-root ro console=tty0 console=ttyS0,115200n8"}
	}
	seed := func(name string) map[string][]byte {
		return map[string][]byte{"meta-data": []byte("local-hostname: " + name + "\n"), "user-data": []byte("#cloud-config\n# keys of " + name + "\n"), "network-config": []byte("version: 2\n")}
	}
	mac := func(s string) net.HardwareAddr { hw, _ := net.ParseMAC(s); return hw }
	var progress strings.Builder
	var installedAt []string
	ts := httptest.NewUnstartedServer(nil)
	s, err := New(Options{
		URL: "http://" + ts.Listener.Addr().String(), Assets: assets, Progress: &progress,
		Machines: []Machine{
			{Name: "cp1", Role: "master", MAC: mac("52:54:00:aa:00:01"), Address: netip.MustParsePrefix("192.168.10.10/24"), Gateway: netip.MustParseAddr("192.168.10.1"), Seed: seed("cp1")},
			{Name: "w1", Role: "node", MAC: mac("52:54:00:aa:00:02"), Address: netip.MustParsePrefix("192.168.10.100/24"), Disk: "/dev/vdb", Seed: seed("w1")},
		},
		Neighbor: func(ip netip.Addr) (net.HardwareAddr, error) {
			if *from == "" {
				return nil, fmt.Errorf("%s is not in the neighbour table", ip)
			}
			return mac(*from), nil
		},
		OnInstalled: func(mac string, _ time.Time) { installedAt = append(installedAt, mac) },
	})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = s.Handler()
	ts.Start()
	t.Cleanup(ts.Close)
	return s, ts, &progress
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

var kernelLine = regexp.MustCompile(`(?m)^kernel (\S+) (.*) \|\| goto failed$`)

func TestMachineScripts(t *testing.T) {
	from := ""
	s, ts, _ := testServer(t, &from)
	if _, body := get(t, ts.URL+"/boot.ipxe"); !strings.Contains(body, "chain "+ts.URL+"/ipxe/${netX/mac:hexhyp}") {
		t.Errorf("boot.ipxe:\n%s", body)
	}
	if _, body := get(t, ts.URL+"/ipxe/52-54-00-ff-ff-ff"); !strings.Contains(body, "is not a machine of this cluster") || !strings.Contains(body, "\nexit\n") {
		t.Errorf("an unknown MAC is not sent on:\n%s", body)
	}
	_, body := get(t, ts.URL+"/ipxe/52-54-00-AA-00-02?ip=192.168.10.100")
	k := kernelLine.FindStringSubmatch(body)
	if k == nil || k[1] != ts.URL+"/assets/node/vmlinuz" || !strings.Contains(body, "initrd --name initrd.img "+ts.URL+"/assets/node/initrd.img") {
		t.Fatalf("w1's script:\n%s", body)
	}
	for _, want := range []string{"console=tty0 console=ttyS0,115200n8 ", "initrd=initrd.img", "rdinit=/kubeup-installer"} {
		if !strings.Contains(k[2], want) {
			t.Errorf("kernel arguments lack %q: %s", want, k[2])
		}
	}
	p, err := installer.ParseCmdline(k[2])
	if err != nil {
		t.Fatal(err)
	}
	if p.Machine != "w1" || p.Disk != "/dev/vdb" || p.Address.String() != "192.168.10.100/24" || p.Gateway.IsValid() || p.Image != "/assets/node/image.raw.zst" || p.Size != 1<<30 || p.Token != s.machines["52:54:00:aa:00:02"].token {
		t.Errorf("installer parameters %+v", p)
	}
	if code, body := get(t, ts.URL+"/assets/node/vmlinuz"); code != 200 || body != "node kernel" {
		t.Errorf("kernel: %d %q", code, body)
	}
	if code, _ := get(t, ts.URL+"/assets/node/passwd"); code != 404 {
		t.Errorf("an unknown asset: %d", code)
	}
	req, _ := http.NewRequest("GET", ts.URL+"/assets/master/image.raw.zst", nil)
	req.Header.Set("Range", "bytes=7-")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusPartialContent || string(b) != "image" {
		t.Errorf("a ranged image request: %s %q", resp.Status, b)
	}
}

// A seed goes only to its machine: its MAC, its token, from its address;
// and not at all once the machine is installed.
func TestSeedOnlyToItsMachine(t *testing.T) {
	from := "52:54:00:aa:00:02" // requests come from the node
	s, ts, progress := testServer(t, &from)
	master, node := s.machines["52:54:00:aa:00:01"], s.machines["52:54:00:aa:00:02"]
	seedURL := func(m *state, mac, file string) string {
		return ts.URL + installer.NoCloudPath + mac + "/" + m.token + "/" + file
	}
	if code, _ := get(t, seedURL(master, "52:54:00:aa:00:01", "user-data")); code != http.StatusForbidden {
		t.Errorf("the node got the master's seed with the master's token: %d", code)
	}
	if code, _ := get(t, seedURL(node, "52:54:00:aa:00:01", "user-data")); code != http.StatusForbidden {
		t.Errorf("the master's seed with the node's token: %d", code)
	}
	if code, _ := get(t, seedURL(node, "52:54:00:aa:00:09", "user-data")); code != http.StatusNotFound {
		t.Errorf("an unknown MAC: %d", code)
	}
	code, body := get(t, seedURL(node, "52-54-00-aa-00-02", "user-data"))
	if code != 200 || body != "#cloud-config\n# keys of w1\n" {
		t.Errorf("the node's own seed: %d %q", code, body)
	}
	from = ""
	if code, _ := get(t, seedURL(node, "52:54:00:aa:00:02", "user-data")); code != http.StatusForbidden {
		t.Errorf("from an address not in the neighbour table: %d", code)
	}
	from = "52:54:00:aa:00:02"

	c := &installer.Client{P: &installer.Params{Server: s.base, MAC: node.MAC, Token: node.token}, HTTP: http.DefaultClient}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seed, err := c.Seed(ctx, []string{"meta-data", "network-config"})
	if err != nil || string(seed["meta-data"]) != "local-hostname: w1\n" {
		t.Fatalf("the installer's seed: %q %v", seed, err)
	}
	waited := make(chan error)
	go func() { waited <- s.WaitInstalled(ctx) }()
	for _, r := range []installer.Report{{Event: installer.EventStarted, Detail: "/dev/vdb"}, {Event: installer.EventWriting, Written: 512 << 20, Total: 1 << 30}, {Event: installer.EventInstalled, Detail: "/dev/vdb"}} {
		if err := c.Report(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	if code, _ := get(t, seedURL(node, "52:54:00:aa:00:02", "user-data")); code != http.StatusGone {
		t.Errorf("the seed of an installed machine: %d", code)
	}
	if _, body := get(t, ts.URL+"/ipxe/52:54:00:aa:00:02"); !strings.Contains(body, "is installed; booting from its disk\nexit\n") {
		t.Errorf("an installed machine's script:\n%s", body)
	}
	select {
	case err := <-waited:
		t.Errorf("WaitInstalled returned with the master not installed: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	from = "52:54:00:aa:00:01"
	mc := &installer.Client{P: &installer.Params{Server: s.base, MAC: master.MAC, Token: master.token}, HTTP: http.DefaultClient}
	if err := mc.Report(ctx, installer.Report{Event: installer.EventInstalled, Detail: "/dev/sda"}); err != nil {
		t.Fatal(err)
	}
	if err := <-waited; err != nil {
		t.Errorf("WaitInstalled: %v", err)
	}
	for _, want := range []string{"w1: 50% of the image written (512 of 1024 MiB)", "w1: installed to /dev/vdb", "refused the seed file user-data of cp1 to 127.0.0.1: that address is not 52:54:00:aa:00:01 on this network (it is 52:54:00:aa:00:02)", "w1 fetches its seed: meta-data"} {
		if !strings.Contains(progress.String(), want) {
			t.Errorf("progress lacks %q:\n%s", want, progress.String())
		}
	}
	st := s.Status()
	if len(st) != 2 || st[0].Name != "cp1" || st[0].Installed.IsZero() || st[1].Last.Event != installer.EventInstalled {
		t.Errorf("status %+v", st)
	}
	// Counted: the three seed files served to the node; nothing for the
	// master, which was only refused.
	want := int64(len(node.Seed["user-data"]) + len(node.Seed["meta-data"]) + len(node.Seed["network-config"]))
	if st[1].Sent != want || st[0].Sent != 0 {
		t.Errorf("bytes served: cp1 %d (want 0), w1 %d (want %d)", st[0].Sent, st[1].Sent, want)
	}
}

// iPXE goes out over TFTP by name; nothing else does, and nothing comes in.
func TestTFTP(t *testing.T) {
	from := ""
	s, _, progress := testServer(t, &from)
	bin := filepath.Join(t.TempDir(), "undionly.kpxe")
	os.WriteFile(bin, []byte("iPXE for BIOS"), 0o644)
	s.o.IPXE = map[string]string{"undionly.kpxe": bin}
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.ServeTFTP(ctx, conn) }()
	defer func() { cancel(); <-done }()
	c, err := tftp.NewClient(conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	wt, err := c.Receive("undionly.kpxe", "octet")
	if err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	if _, err := wt.WriteTo(&got); err != nil || got.String() != "iPXE for BIOS" {
		t.Errorf("received %q, %v", got.String(), err)
	}
	if _, err := c.Receive("../../etc/passwd", "octet"); err == nil {
		t.Error("a file outside the iPXE list was served")
	}
	rf, err := c.Send("upload", "octet")
	if err == nil {
		if _, err := rf.ReadFrom(strings.NewReader("x")); err == nil {
			t.Error("a write was accepted")
		}
	}
	if !strings.Contains(progress.String(), "fetches iPXE (undionly.kpxe) over TFTP") {
		t.Errorf("progress:\n%s", progress.String())
	}
}
