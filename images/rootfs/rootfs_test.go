package rootfs

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/images/disk"
	"kubeup.dev/kubeup/systemd"
)

func TestRootLabelMatchesDisk(t *testing.T) {
	if RootLabel != disk.RootLabel {
		t.Fatalf("fstab label %q != kernel command line label %q", RootLabel, disk.RootLabel)
	}
}

func TestParseDpkgStatus(t *testing.T) {
	status := "Package: a\nStatus: install ok installed\nVersion: 1.0\n\nPackage: b\nStatus: deinstall ok config-files\nVersion: 2\n\nPackage: c\nVersion: 3:4-5\nStatus: install ok installed\n"
	got := ParseDpkgStatus([]byte(status))
	want := map[string]string{"a": "1.0", "c": "3:4-5"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v", got)
	}
	if s := SortedPackages(got); strings.Join(s, " ") != "a=1.0 c=3:4-5" {
		t.Errorf("sorted %v", s)
	}
}

func write(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestTrimKeepsCopyrightsAndReports(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("Trim runs depmod in a chroot: needs root")
	}
	root := t.TempDir()
	write(t, root, "usr/share/doc/pkg/changelog.gz", "12345")
	write(t, root, "usr/share/doc/pkg/copyright", "GPL")
	write(t, root, "usr/share/locale/de/LC_MESSAGES/x.mo", "1234567")
	write(t, root, "usr/share/locale/locale.alias", "a")
	write(t, root, "usr/bin/keep", "binary")
	report, err := trimRules(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "usr/share/doc/pkg/copyright")); err != nil {
		t.Error("copyright removed")
	}
	if _, err := os.Stat(filepath.Join(root, "usr/share/locale/locale.alias")); err != nil {
		t.Error("locale.alias removed")
	}
	if _, err := os.Stat(filepath.Join(root, "usr/share/doc/pkg/changelog.gz")); !os.IsNotExist(err) {
		t.Error("changelog kept")
	}
	if _, err := os.Stat(filepath.Join(root, "usr/bin/keep")); err != nil {
		t.Error("binary removed")
	}
	var total int64
	for _, r := range report {
		total += r.Bytes
	}
	if total != 12 || report[0].Files != 1 || report[0].Bytes != 5 {
		t.Errorf("report %+v", report)
	}
}

func TestConfigure(t *testing.T) {
	root := t.TempDir()
	write(t, root, "lib/systemd/system/systemd-networkd.service", "[Unit]\n")
	write(t, root, "lib/systemd/system/systemd-resolved.service", "[Unit]\n")
	write(t, root, "etc/ssh/ssh_host_ed25519_key", "secret")
	write(t, root, "etc/machine-id", "0123456789abcdef0123456789abcdef\n")
	// openssh-server's postinst enables sshd.
	write(t, root, "lib/systemd/system/ssh.service", "[Unit]\n")
	for _, l := range []string{"etc/systemd/system/multi-user.target.wants/ssh.service", "etc/systemd/system/sshd.service"} {
		os.MkdirAll(filepath.Dir(filepath.Join(root, l)), 0o755)
		if err := os.Symlink("/lib/systemd/system/ssh.service", filepath.Join(root, l)); err != nil {
			t.Fatal(err)
		}
	}
	u := systemd.Target{Description: "t", WantedBy: []string{"multi-user.target"}}.Unit("kubeup-node")
	err := Configure(root, Appliance{Role: components.Node, Units: []systemd.Unit{u}, Target: u.Name,
		Files: []components.File{{Path: "/etc/sysctl.d/x.conf", Mode: 0o600, Content: []byte("x=1\n")}}})
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := os.ReadFile(filepath.Join(root, "etc/machine-id")); len(id) != 0 {
		t.Errorf("machine-id %q is not empty: every clone would share it", id)
	}
	if _, err := os.Stat(filepath.Join(root, "etc/ssh/ssh_host_ed25519_key")); !os.IsNotExist(err) {
		t.Error("SSH host key left in the image")
	}
	for link, target := range map[string]string{
		"etc/systemd/system/multi-user.target.wants/kubeup-node.target":       "/etc/systemd/system/kubeup-node.target",
		"etc/systemd/system/multi-user.target.wants/systemd-networkd.service": "/lib/systemd/system/systemd-networkd.service",
		"etc/systemd/system/apt-daily.timer":                                  "/dev/null",
		"etc/resolv.conf":                                                     "../run/systemd/resolve/stub-resolv.conf",
	} {
		got, err := os.Readlink(filepath.Join(root, link))
		if err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %s", link, got, err, target)
		}
	}
	fi, err := os.Stat(filepath.Join(root, "etc/sysctl.d/x.conf"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v %v", fi.Mode(), err)
	}
	if fi, err := os.Stat(filepath.Join(root, "etc/systemd/system/kubeup-node.target")); err != nil || fi.Mode().Perm() != UnitFileMode {
		t.Errorf("unit file mode %v %v, want %o", fi.Mode(), err, UnitFileMode)
	}
	for _, l := range []string{"etc/systemd/system/multi-user.target.wants/ssh.service", "etc/systemd/system/sshd.service"} {
		if _, err := os.Lstat(filepath.Join(root, l)); !os.IsNotExist(err) {
			t.Errorf("sshd still enabled in the image: %s (%v)", l, err)
		}
	}
	resolved, _ := os.ReadFile(filepath.Join(root, "etc/systemd/resolved.conf.d/90-kubeup.conf"))
	if !strings.Contains(string(resolved), "LLMNR=no\n") || !strings.Contains(string(resolved), "MulticastDNS=no\n") {
		t.Errorf("resolved.conf.d:\n%s", resolved)
	}
	fstab, _ := os.ReadFile(filepath.Join(root, "etc/fstab"))
	if !strings.Contains(string(fstab), "LABEL=kubeup-root / ext4") {
		t.Errorf("fstab:\n%s", fstab)
	}
}

// TestCloudConfigSchema checks the image's cloud-init settings with the
// cloud-init the images carry (Debian's, installed by make deps).
func TestCloudConfigSchema(t *testing.T) {
	if _, err := exec.LookPath("cloud-init"); err != nil {
		t.Skip("cloud-init not installed (make deps)")
	}
	for _, f := range systemFiles() {
		if !strings.HasPrefix(f.Path, "/etc/cloud/cloud.cfg.d/") {
			continue
		}
		path := filepath.Join(t.TempDir(), "cloud.cfg")
		if err := os.WriteFile(path, append([]byte("#cloud-config\n"), f.Content...), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("cloud-init", "schema", "--config-file", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
			t.Errorf("cloud-init schema %s: %v\n%s", f.Path, err, out)
		}
	}
}
