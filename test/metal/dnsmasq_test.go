package metal

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The README's dnsmasq settings are what dnsmasq itself accepts.
func TestDnsmasqConfParses(t *testing.T) {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq not installed (make deps installs dnsmasq-base)")
	}
	hosts := []DHCPHost{{"52:54:00:77:01:00", "192.168.77.100", "w1"}}
	for _, proxied := range [][]string{nil, {"52:54:00:77:01:00"}} {
		conf := filepath.Join(t.TempDir(), "dnsmasq.conf")
		text := DnsmasqConf("br0", "192.168.77.150", "192.168.77.199", "192.168.77.1:8080", hosts, proxied...)
		os.WriteFile(conf, []byte(text), 0o644)
		if out, err := exec.Command("dnsmasq", "--test", "--conf-file="+conf).CombinedOutput(); err != nil {
			t.Fatalf("dnsmasq --test: %v\n%s\n%s", err, out, text)
		}
		if proxied != nil && !strings.Contains(text, "dhcp-mac=set:proxied,52:54:00:77:01:00\n") {
			t.Errorf("the proxied machine is not tagged:\n%s", text)
		}
	}
}
