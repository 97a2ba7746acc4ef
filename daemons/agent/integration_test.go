package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// TestIntegrationPodNetwork builds two machines and a pod out of network
// namespaces and checks the pod network end to end with the real kernel,
// iptables and (when found) the CNI plugins the image ships:
//
//	pod ns ──(CNI bridge cni0, 10.244.1.0/24)── node-0 ns 10.77.0.100 ══veth══ master-0 ns 10.77.0.10
//	                                                                            10.244.0.1 on lo (a "pod")
//
// Routes are programmed by netlinkRoutes in both machine namespaces, the
// masquerade rule by iptablesMasq in node-0's. A TCP server on master-0
// reports the source address it sees: masqueraded to 10.77.0.100 for a
// machine address, the pod's own address for a pod address.
func TestIntegrationPodNetwork(t *testing.T) {
	if testing.Short() {
		t.Skip("integration test (network namespaces, root): skipped under -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian packages iproute2, iptables)", tool)
		}
	}
	prefix := fmt.Sprintf("kubeup-it-%d-", os.Getpid())
	nodeNS, masterNS, podNS := prefix+"node", prefix+"master", prefix+"pod"
	for _, ns := range []string{nodeNS, masterNS, podNS} {
		run(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	// The machines' L2 network.
	run(t, "ip", "link", "add", "eth1", "netns", nodeNS, "type", "veth", "peer", "name", "eth1", "netns", masterNS)
	run(t, "ip", "-n", nodeNS, "addr", "add", "10.77.0.100/24", "dev", "eth1")
	run(t, "ip", "-n", masterNS, "addr", "add", "10.77.0.10/24", "dev", "eth1")
	run(t, "ip", "-n", masterNS, "addr", "add", "10.244.0.1/32", "dev", "lo")
	for _, ns := range []string{nodeNS, masterNS} {
		run(t, "ip", "-n", ns, "link", "set", "eth1", "up")
	}

	cluster := netip.MustParsePrefix("10.244.0.0/16")
	nodeRoutes := newNetlinkRoutes(handleAt(t, nodeNS))
	masterRoutes := newNetlinkRoutes(handleAt(t, masterNS))

	// Routes: a stale route of ours goes, a route someone else made stays.
	if err := nodeRoutes.Replace(r("10.244.9.0/24", "10.77.0.10")); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "-n", nodeNS, "route", "add", "10.244.8.0/24", "via", "10.77.0.10", "proto", "static")
	for range 2 { // the second pass changes nothing
		if _, _, err := ApplyRoutes(nodeRoutes, []Route{r("10.244.0.0/24", "10.77.0.10")}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := ApplyRoutes(masterRoutes, []Route{r("10.244.1.0/24", "10.77.0.100")}); err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(run(t, "ip", "-n", nodeNS, "route", "show", "proto", fmt.Sprint(RouteProtocol))); got != "10.244.0.0/24 via 10.77.0.10 dev eth1" {
		t.Errorf("node-0's kubeup routes:\n%s", got)
	}
	if got := run(t, "ip", "-n", nodeNS, "route", "show", "proto", "static"); !strings.Contains(got, "10.244.8.0/24") {
		t.Errorf("a foreign route was removed:\n%s", got)
	}
	if got, err := nodeRoutes.List(); err != nil || len(got) != 1 || got[0] != r("10.244.0.0/24", "10.77.0.10") {
		t.Errorf("List: %v %v", got, err)
	}
	// A next hop off the machine network fails, and says so.
	if err := nodeRoutes.Replace(r("10.244.5.0/24", "192.0.2.1")); err == nil {
		t.Error("route via an unreachable gateway accepted")
	}

	// Masquerade, twice: idempotent.
	masq := newIPTablesMasq()
	inNetns(t, nodeNS, func() {
		for range 2 {
			if err := masq.EnsureMasquerade(cluster); err != nil {
				t.Fatal(err)
			}
		}
	})
	nat := run(t, "ip", "netns", "exec", nodeNS, "iptables", "-t", "nat", "-S")
	for _, want := range []string{
		"-A POSTROUTING -m comment --comment \"kubeup pod masquerade\" -j KUBEUP-MASQ",
		"-A KUBEUP-MASQ -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE",
	} {
		if strings.Count(nat, want) != 1 {
			t.Errorf("want exactly one %q in:\n%s", want, nat)
		}
	}

	t.Run("pod", func(t *testing.T) {
		bin := cniBinDir()
		if bin == "" {
			t.Skip("no CNI plugins (bridge, host-local, portmap) found: set KUBEUP_CNI_BIN_DIR or run `kubeup artifacts`")
		}
		conf, err := CNIConfig(netip.MustParsePrefix("10.244.1.0/24"))
		if err != nil {
			t.Fatal(err)
		}
		result := cniAdd(t, bin, nodeNS, podNS, conf)
		if !strings.Contains(string(result), `"10.244.1.2/24"`) {
			t.Fatalf("CNI result: %s", result)
		}
		if got := run(t, "ip", "-n", podNS, "route", "show", "default"); !strings.Contains(got, "via 10.244.1.1") {
			t.Errorf("pod default route: %s", got)
		}
		for _, tc := range []struct{ dst, wantSrc string }{
			{"10.77.0.10", "10.77.0.100"}, // leaves the pod network: masqueraded
			{"10.244.0.1", "10.244.1.2"},  // pod to pod across machines: not
		} {
			if got := sourceSeen(t, masterNS, podNS, tc.dst); got != tc.wantSrc {
				t.Errorf("pod → %s arrived from %s, want %s", tc.dst, got, tc.wantSrc)
			}
		}
	})
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func handleAt(t *testing.T, name string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// inNetns runs f on an OS thread switched into the named namespace; what f
// execs (iptables) and the sockets it opens live there.
func inNetns(t *testing.T, name string, f func()) {
	t.Helper()
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer orig.Close()
	target, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := netns.Set(target); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := netns.Set(orig); err != nil {
			panic(err) // never unlock a thread left in the wrong namespace
		}
		runtime.UnlockOSThread()
	}()
	f()
}

// sourceSeen connects from the pod namespace to dst on a server in the
// server namespace and returns the client address the server saw.
func sourceSeen(t *testing.T, serverNS, clientNS, dst string) string {
	t.Helper()
	var ln net.Listener
	inNetns(t, serverNS, func() {
		var err error
		if ln, err = net.Listen("tcp", net.JoinHostPort(dst, "0")); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	seen := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			seen <- err.Error()
			return
		}
		defer c.Close()
		host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
		seen <- host
	}()
	inNetns(t, clientNS, func() {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatalf("pod → %s: %v", dst, err)
		}
		c.Close()
	})
	select {
	case s := <-seen:
		return s
	case <-time.After(5 * time.Second):
		t.Fatalf("server on %s saw no connection", dst)
		return ""
	}
}

// cniBinDir finds the bridge, host-local and portmap plugins: the image's
// (kubeup's artifact cache) or the host's.
func cniBinDir() string {
	candidates := []string{os.Getenv("KUBEUP_CNI_BIN_DIR"), "/opt/cni/bin", "/usr/lib/cni"}
	var caches []string
	if d := os.Getenv("KUBEUP_CACHE_DIR"); d != "" {
		caches = append(caches, d)
	}
	if d, err := os.UserCacheDir(); err == nil {
		caches = append(caches, filepath.Join(d, "kubeup"))
	}
	for _, c := range caches {
		m, _ := filepath.Glob(filepath.Join(c, "artifacts", "cni-plugins", "*", "root", "opt", "cni", "bin"))
		candidates = append(candidates, m...)
	}
	for _, d := range candidates {
		if d == "" {
			continue
		}
		ok := true
		for _, p := range []string{"bridge", "host-local", "portmap"} {
			if _, err := os.Stat(filepath.Join(d, p)); err != nil {
				ok = false
			}
		}
		if ok {
			return d
		}
	}
	return ""
}

// cniAdd runs the conflist's ADD the way a CNI runtime does (each plugin
// with the previous one's result), in the machine's namespace, with the
// IPAM state in a temp dir instead of the host's /var/lib/cni.
func cniAdd(t *testing.T, bin, hostNS, podNS string, conflist []byte) []byte {
	t.Helper()
	var list struct {
		CNIVersion string           `json:"cniVersion"`
		Name       string           `json:"name"`
		Plugins    []map[string]any `json:"plugins"`
	}
	if err := json.Unmarshal(conflist, &list); err != nil {
		t.Fatal(err)
	}
	var prev json.RawMessage
	for _, p := range list.Plugins {
		p["cniVersion"], p["name"] = list.CNIVersion, list.Name
		if ipam, ok := p["ipam"].(map[string]any); ok {
			ipam["dataDir"] = t.TempDir()
		}
		if prev != nil {
			p["prevResult"] = prev
		}
		if p["type"] == "portmap" {
			p["runtimeConfig"] = map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}}}
		}
		stdin, _ := json.Marshal(p)
		cmd := exec.Command("ip", "netns", "exec", hostNS, filepath.Join(bin, p["type"].(string)))
		cmd.Env = []string{"CNI_COMMAND=ADD", "CNI_CONTAINERID=kubeup-it", "CNI_NETNS=/run/netns/" + podNS,
			"CNI_IFNAME=eth0", "CNI_PATH=" + bin, "PATH=" + os.Getenv("PATH")}
		cmd.Stdin = bytes.NewReader(stdin)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("CNI %s ADD: %v\n%s\n%s", p["type"], err, out, stderr.Bytes())
		}
		prev = out
	}
	return prev
}
