package rootfs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"kubeup.dev/kubeup/images/internal/heartbeat"
)

// Packages are the Debian packages of every kubeup image, with why.
var Packages = []string{
	"systemd", "systemd-sysv", "udev", "dbus", // init, devices, the bus the agent reads units from
	"systemd-resolved",                // DNS stub; networkd does the rest of networking
	"cloud-init", "cloud-guest-utils", // first-boot personalisation; growpart
	"fdisk",                   // sfdisk, which growpart uses on GPT
	"isc-dhcp-client",         // cloud-init's ephemeral DHCP on EC2/GCE
	"linux-image-cloud-amd64", // virtio/NVMe/ENA/gVNIC kernel without desktop drivers
	"kmod", "e2fsprogs", "procps", "netbase", "ca-certificates",
	"iproute2", "iptables", "conntrack", "ethtool", "socat", // what kubelet and kube-proxy call
	"iputils-ping",
	"openssh-server", "sudo", // login for the users in spec.ssh (no keys: nobody can log in)
}

// Suite and Mirror of the Debian archive.
const (
	Suite  = "bookworm"
	Mirror = "http://deb.debian.org/debian"
)

// BaseOptions configure the base layer.
type BaseOptions struct {
	CacheDir        string
	SourceDateEpoch int64
	Progress        io.Writer
}

// Base is the cached base layer.
type Base struct {
	Key string
	Tar string
	// Packages maps every installed package to its version.
	Packages map[string]string
}

// baseKey covers everything the layer depends on.
func baseKey(o BaseOptions) string {
	h := sha256.New()
	fmt.Fprintf(h, "kubeup-base-v1\n%s\n%s\n%d\n%s\n", Suite, Mirror, o.SourceDateEpoch, strings.Join(mmdebstrapArgs("OUT"), "\n"))
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func mmdebstrapArgs(out string) []string {
	return []string{
		"--variant=minbase", "--mode=root", "--format=tar",
		`--aptopt=APT::Install-Recommends "false"`,
		"--include=" + strings.Join(Packages, ","),
		Suite, out, Mirror,
	}
}

// EnsureBase returns the cached base layer, building it with mmdebstrap
// when its inputs changed.
func EnsureBase(ctx context.Context, o BaseOptions) (*Base, error) {
	key := baseKey(o)
	dir := filepath.Join(o.CacheDir, "rootfs", "base-"+key)
	b := &Base{Key: key, Tar: filepath.Join(dir, "base.tar")}
	if data, err := os.ReadFile(filepath.Join(dir, "packages.json")); err == nil {
		if err := json.Unmarshal(data, &b.Packages); err == nil {
			if _, err := os.Stat(b.Tar); err == nil {
				return b, nil
			}
		}
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return nil, fmt.Errorf("mmdebstrap not found: install the Debian package mmdebstrap (make deps does)")
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".base-*")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	start := time.Now()
	done := progress(ctx, o.Progress, "rootfs: mmdebstrap "+Suite+" ("+strconv.Itoa(len(Packages))+" packages)", start)
	cmd := exec.CommandContext(ctx, "mmdebstrap", mmdebstrapArgs(filepath.Join(tmp, "base.tar"))...)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH="+strconv.FormatInt(o.SourceDateEpoch, 10), "LC_ALL=C.UTF-8")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	done()
	if err != nil {
		return nil, fmt.Errorf("mmdebstrap: %w\n%s", err, tail(out.Bytes(), 30))
	}
	pkgs, err := packagesInTar(ctx, filepath.Join(tmp, "base.tar"))
	if err != nil {
		return nil, err
	}
	data, _ := json.MarshalIndent(pkgs, "", "  ")
	if err := os.WriteFile(filepath.Join(tmp, "packages.json"), data, 0o644); err != nil {
		return nil, err
	}
	os.RemoveAll(dir)
	if err := os.Rename(tmp, dir); err != nil {
		return nil, err
	}
	b.Packages = pkgs
	return b, nil
}

// packagesInTar reads dpkg's status file out of the layer.
func packagesInTar(ctx context.Context, tarPath string) (map[string]string, error) {
	cmd := exec.CommandContext(ctx, "tar", "-xOf", tarPath, "./var/lib/dpkg/status")
	status, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("read dpkg status from %s: %w", tarPath, err)
	}
	return ParseDpkgStatus(status), nil
}

// ParseDpkgStatus returns package → version for installed packages.
func ParseDpkgStatus(status []byte) map[string]string {
	out := map[string]string{}
	var name, version, state string
	flush := func() {
		if name != "" && strings.HasSuffix(state, " installed") {
			out[name] = version
		}
		name, version, state = "", "", ""
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "Package: "):
			name = strings.TrimPrefix(line, "Package: ")
		case strings.HasPrefix(line, "Version: "):
			version = strings.TrimPrefix(line, "Version: ")
		case strings.HasPrefix(line, "Status: "):
			state = strings.TrimPrefix(line, "Status: ")
		}
	}
	flush()
	return out
}

// SortedPackages returns "name=version" lines in name order.
func SortedPackages(p map[string]string) []string {
	out := make([]string, 0, len(p))
	for k, v := range p {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// progress prints "step..." then a line every 15 s, and "step: done in Xs"
// when the returned function is called.
func progress(ctx context.Context, w io.Writer, step string, start time.Time) func() {
	if w == nil {
		w = io.Discard
	}
	fmt.Fprintf(w, "==> %s\n", step)
	stop := heartbeat.Start(ctx, 15*time.Second, start, func(elapsed time.Duration) {
		fmt.Fprintf(w, "    %s: still running (%s)\n", step, elapsed.Round(time.Second))
	})
	return func() {
		stop()
		fmt.Fprintf(w, "    %s: done in %s\n", step, time.Since(start).Round(100*time.Millisecond))
	}
}

func tail(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
