package metal

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// The README's dnsmasq settings are what dnsmasq itself accepts.
func TestDnsmasqConfParses(t *testing.T) {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq not installed (make deps installs dnsmasq-base)")
	}
	conf := filepath.Join(t.TempDir(), "dnsmasq.conf")
	os.WriteFile(conf, []byte(DnsmasqConf("br0", "192.168.77.150", "192.168.77.199", "192.168.77.1:8080", []DHCPHost{{"52:54:00:77:01:00", "192.168.77.100", "w1"}})), 0o644)
	if out, err := exec.Command("dnsmasq", "--test", "--conf-file="+conf).CombinedOutput(); err != nil {
		t.Fatalf("dnsmasq --test: %v\n%s", err, out)
	}
}
