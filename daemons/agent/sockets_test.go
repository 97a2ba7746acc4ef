package agent

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// procAddr writes an address as /proc/net does: 32-bit words in native
// byte order, in hex, then the port.
func procAddr(ap string) string {
	a := netip.MustParseAddrPort(ap)
	b := a.Addr().AsSlice()
	var s strings.Builder
	for i := 0; i < len(b); i += 4 {
		fmt.Fprintf(&s, "%08X", binary.NativeEndian.Uint32(b[i:]))
	}
	return fmt.Sprintf("%s:%04X", s.String(), a.Port())
}

func procTable(rows ...[3]string) string {
	var b strings.Builder
	b.WriteString("  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n")
	for i, r := range rows {
		fmt.Fprintf(&b, "%4d: %s %s %s 00000000:00000000 00:00000000 00000000     0        0 %d 1 0000000000000000 100 0 0 10 0\n",
			i, procAddr(r[0]), procAddr(r[1]), r[2], 1000+i)
	}
	return b.String()
}

func TestListeningSockets(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("tcp", procTable(
		[3]string{"127.0.0.53:53", "0.0.0.0:0", "0A"},
		[3]string{"10.77.0.10:2379", "0.0.0.0:0", "0A"},
		[3]string{"127.0.0.1:1338", "0.0.0.0:0", "0A"},
		[3]string{"127.0.0.1:41000", "127.0.0.1:1338", "01"},   // a connection
		[3]string{"10.77.0.10:2380", "10.77.0.11:40000", "06"}, // TIME_WAIT
	))
	write("tcp6", procTable(
		[3]string{"[::]:6443", "[::]:0", "0A"},
		[3]string{"[::]:10250", "[::]:0", "0A"},
		[3]string{"[::]:10250", "[::]:0", "0A"}, // SO_REUSEPORT
		[3]string{"[::ffff:127.0.0.1]:10248", "[::]:0", "0A"},
	))
	write("udp", procTable(
		[3]string{"127.0.0.53:53", "0.0.0.0:0", "07"},
		[3]string{"10.0.2.15:68", "0.0.0.0:0", "07"},
		[3]string{"10.77.0.10:45000", "10.96.0.10:53", "01"}, // a connected client
	))
	// No udp6 file: a kernel without IPv6.
	got, err := ListeningSockets(dir)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range got {
		lines = append(lines, s.String())
	}
	want := "tcp 10.77.0.10:2379,tcp 127.0.0.1:1338,tcp 127.0.0.1:10248,tcp 127.0.0.53:53,tcp [::]:6443,tcp [::]:10250,udp 10.0.2.15:68,udp 127.0.0.53:53"
	if strings.Join(lines, ",") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(lines, ","), want)
	}
	// JSON keeps the address as text.
	data, _ := json.Marshal(got[0])
	if string(data) != `{"proto":"tcp","address":"10.77.0.10:2379"}` {
		t.Errorf("JSON %s", data)
	}
	write("tcp", "header\n   0: 0100007F:zz 00000000:0000 0A\n")
	if _, err := ListeningSockets(dir); err == nil {
		t.Error("a bad address was accepted")
	}
}

// The real table of this machine parses (whatever listens here).
func TestListeningSocketsOfThisMachine(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/net/tcp"); err != nil {
		t.Skip("no /proc/net/tcp")
	}
	if _, err := ListeningSockets("/proc/net"); err != nil {
		t.Fatal(err)
	}
}
