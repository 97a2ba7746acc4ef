package components

import (
	"bytes"
	"errors"
	"maps"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/systemd"
	goldenpkg "kubeup.dev/kubeup/test/golden"
)

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	goldenpkg.Assert(t, name, got)
}

func testCluster() *Cluster {
	return &Cluster{
		Name:              "demo",
		KubernetesVersion: "v1.37.2",
		Masters: []Machine{
			{Name: "master-0", Role: Master, IP: netip.MustParseAddr("10.77.0.10")},
			{Name: "master-1", Role: Master, IP: netip.MustParseAddr("10.77.0.11")},
			{Name: "master-2", Role: Master, IP: netip.MustParseAddr("10.77.0.12")},
		},
		MachineCIDR:        netip.MustParsePrefix("10.77.0.0/24"),
		MachineGateway:     netip.MustParseAddr("10.77.0.1"),
		PodCIDR:            netip.MustParsePrefix("10.244.0.0/16"),
		NodeCIDRMaskSize:   24,
		ServiceCIDR:        netip.MustParsePrefix("10.96.0.0/12"),
		APIServerServiceIP: netip.MustParseAddr("10.96.0.1"),
		DNSServiceIP:       netip.MustParseAddr("10.96.0.10"),
		DNSDomain:          "cluster.local",
		APIServerEndpoint:  "https://10.77.0.10:6443",
		LogForward:         "10.96.0.11:24224",
		Images:             Images{Pause: "registry.kubeup.dev/pause:3.10"},
		PodSecurity:        PodSecurity{Enforce: PodSecurityBaseline, Audit: PodSecurityRestricted, Warn: PodSecurityRestricted},
		EtcdSnapshots:      EtcdSnapshots{Interval: time.Hour, Keep: 24},
		LeafLifetime:       8760 * time.Hour,
	}
}

func testContexts() []Context {
	c := testCluster()
	s := Secrets{BootstrapToken: "abcdef.0123456789abcdef", EncryptionKey: bytes.Repeat([]byte{7}, 32)}
	return []Context{
		{Cluster: c, Machine: c.Masters[0], Secrets: s},
		{Cluster: c, Machine: Machine{Name: "node-0", Role: Node, IP: netip.MustParseAddr("10.77.0.100")}, Secrets: s},
	}
}

// Every unit of every role, as baked into the images.
func TestUnitsGolden(t *testing.T) {
	for _, r := range Roles() {
		for _, u := range RoleUnits(r) {
			data, err := u.Bytes()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, filepath.Join("units", string(r), u.Name), data)
		}
	}
}

// Every static file of each role's image (sysctls, modules, tmpfiles, the
// audit policy, ...).
func TestImageFilesGolden(t *testing.T) {
	for _, r := range Roles() {
		files, err := RoleImageFiles(r)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			golden(t, filepath.Join("image", string(r), strings.TrimPrefix(f.Path, "/")), f.Content)
		}
	}
}

// Every machine file (env files with the flags, configs, kubeconfigs).
func TestMachineFilesGolden(t *testing.T) {
	for _, ctx := range testContexts() {
		files, err := MachineFiles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			golden(t, filepath.Join("files", ctx.Machine.Name, strings.TrimPrefix(f.Path, "/")), f.Content)
		}
	}
}

func TestFlagsAreSortedAndStable(t *testing.T) {
	t.Parallel()
	ctx := testContexts()[0]
	for _, c := range ForRole(Master) {
		a, b := c.Flags(ctx).Args(), c.Flags(ctx).Args()
		if strings.Join(a, " ") != strings.Join(b, " ") {
			t.Errorf("%s flags are not stable", c.Name())
		}
		key := func(arg string) string { return strings.SplitN(arg, "=", 2)[0] }
		for i := 1; i < len(a); i++ {
			if key(a[i-1]) >= key(a[i]) {
				t.Errorf("%s flags not sorted: %s before %s", c.Name(), a[i-1], a[i])
			}
		}
	}
}

// The security properties the components promise, checked on the flags.
func TestSecurityFlags(t *testing.T) {
	ctx := testContexts()[0]
	api := APIServer{}.Flags(ctx)
	for k, v := range map[string]string{
		"anonymous-auth": "false", "authorization-mode": "Node,RBAC",
		"enable-admission-plugins": "NodeRestriction,PodSecurity,DenyServiceExternalIPs", "encryption-provider-config": EncryptionConfigPath,
		"admission-control-config-file": AdmissionConfigPath,
	} {
		if api[k] != v {
			t.Errorf("kube-apiserver --%s=%q, want %q", k, api[k], v)
		}
	}
	etcd := Etcd{}.Flags(ctx)
	if etcd["client-cert-auth"] != "true" || etcd["peer-client-cert-auth"] != "true" {
		t.Errorf("etcd does not require client certificates: %v", etcd)
	}
	// Every etcd listener is TLS, except metrics on loopback (served onwards
	// by the agent over TLS).
	for k, v := range etcd {
		if strings.Contains(k, "urls") && strings.Contains(v, "http://") && v != "http://"+EtcdMetricsAddr {
			t.Errorf("etcd --%s=%s is not TLS", k, v)
		}
	}
	if cm := (ControllerManager{}).Flags(ctx)["controllers"]; !strings.Contains(cm, "bootstrapsigner") || !strings.Contains(cm, "tokencleaner") {
		t.Errorf("controller-manager controllers %q lack the bootstrap-token controllers", cm)
	}
	for _, ctx := range testContexts() {
		files, err := MachineFiles(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if strings.HasSuffix(f.Path, ".conf") && strings.HasPrefix(f.Path, KubernetesDir) && f.Mode != 0o600 {
				t.Errorf("%s: kubeconfig mode %o, want 600", f.Path, f.Mode)
			}
			if f.Path == EncryptionConfigPath && f.Mode != 0o600 {
				t.Errorf("%s mode %o, want 600", f.Path, f.Mode)
			}
			if f.Path == KubeletConfigPath && !bytes.Contains(f.Content, []byte("mode: Webhook")) {
				t.Errorf("kubelet authorization is not Webhook:\n%s", f.Content)
			}
		}
	}
}

func TestEveryUnitWaitsForCloudInitAndRestarts(t *testing.T) {
	t.Parallel()
	for _, r := range Roles() {
		for _, c := range ForRole(r) {
			u := c.Unit(r)
			_, scheduled := c.(Scheduled)
			switch got := u.Value("Service", "Restart"); {
			case scheduled && (got != "" || u.Value("Service", "Type") != "oneshot"):
				t.Errorf("%s (scheduled) Restart=%s Type=%s, want a oneshot that its timer restarts", u.Name, got, u.Value("Service", "Type"))
			case !scheduled && got != "always":
				t.Errorf("%s Restart=%s", u.Name, got)
			}
			if got := u.Value("Unit", "ConditionPathExists"); got != EnvFile(c.Name()) {
				t.Errorf("%s ConditionPathExists=%s", u.Name, got)
			}
			if got := u.Value("Service", "MemoryAccounting"); got != "yes" {
				t.Errorf("%s has no resource accounting", u.Name)
			}
			if got := u.Value("Unit", "PartOf"); got != RoleTarget(r) {
				t.Errorf("%s PartOf=%s", u.Name, got)
			}
		}
	}
	order := map[string]string{"kubelet.service": "containerd.service", "kube-apiserver.service": "etcd.service",
		"kubeup-etcd-snapshot.service": "etcd.service"}
	for _, u := range RoleUnits(Master) {
		if dep, ok := order[u.Name]; ok && !contains(u.Values("Unit", "After"), dep) {
			t.Errorf("%s is not ordered after %s", u.Name, dep)
		}
	}
}

// A scheduled component: the image carries its service and its timer, the
// role target wants the timer (never the service), the timer starts the
// service, and the agent watches the timer. Its run never starts etcd.
func TestScheduledComponents(t *testing.T) {
	t.Parallel()
	units := map[string]systemd.Unit{}
	for _, u := range RoleUnits(Master) {
		units[u.Name] = u
	}
	target := units[RoleTarget(Master)]
	n := 0
	for _, c := range ForRole(Master) {
		s, ok := c.(Scheduled)
		if !ok {
			continue
		}
		n++
		timer, service := c.Name()+".timer", c.Name()+".service"
		if ActiveUnit(c) != timer {
			t.Errorf("ActiveUnit(%s) = %s", c.Name(), ActiveUnit(c))
		}
		if _, ok := units[service]; !ok {
			t.Errorf("the image lacks %s", service)
		}
		tu, ok := units[timer]
		if !ok || tu.Name != s.Timer(Master).Name {
			t.Fatalf("the image lacks %s", timer)
		}
		if got := tu.Value("Timer", "Unit"); got != service {
			t.Errorf("%s starts %q", timer, got)
		}
		if tu.Value("Timer", "OnUnitInactiveSec") == "" || tu.Value("Timer", "OnBootSec") == "" {
			t.Errorf("%s has no schedule", timer)
		}
		if wants := target.Values("Unit", "Wants"); !contains(wants, timer) || contains(wants, service) {
			t.Errorf("the target wants %v: want the timer, not the service", wants)
		}
		if contains(units[service].Values("Unit", "Wants"), "etcd.service") || contains(units[service].Values("Unit", "Requires"), "etcd.service") {
			t.Errorf("%s would start etcd", service)
		}
	}
	if n == 0 {
		t.Error("no scheduled component on masters (the etcd snapshot is one)")
	}
	cfg := AgentConfigFor(testContexts()[0])
	if !contains(cfg.Units, "kubeup-etcd-snapshot.timer") || contains(cfg.Units, "kubeup-etcd-snapshot.service") {
		t.Errorf("agent units %v", cfg.Units)
	}
	if (Agent{}).Name()+".service" != agentconfig.AgentUnit {
		t.Errorf("agentconfig.AgentUnit %q is not the agent's unit", agentconfig.AgentUnit)
	}
}

// etcd's flags and the agent's restore name the same member.
func TestEtcdMemberMatchesFlags(t *testing.T) {
	t.Parallel()
	c := testCluster()
	c.EtcdSnapshots = EtcdSnapshots{Interval: 2 * time.Hour, Keep: 12}
	ctx := Context{Cluster: c, Machine: c.Masters[1]}
	flags := Etcd{}.Flags(ctx)
	cfg := AgentConfigFor(ctx)
	m := cfg.Etcd.Member
	for flag, v := range map[string]string{"name": m.Name, "data-dir": m.DataDir, "initial-cluster": m.InitialCluster,
		"initial-cluster-token": m.InitialClusterToken, "initial-advertise-peer-urls": m.InitialAdvertisePeerURLs} {
		if flags[flag] != v {
			t.Errorf("etcd --%s=%s, agent member says %s", flag, flags[flag], v)
		}
	}
	if m.Name != "master-1" || m.InitialAdvertisePeerURLs != "https://10.77.0.11:2380" || m.Unit != "etcd.service" ||
		!strings.HasPrefix(flags["listen-client-urls"], m.ClientURL+",") {
		t.Errorf("member %+v", m)
	}
	if s := cfg.Etcd.Snapshots; s.Interval != "2h0m0s" || s.Keep != 12 || s.Dir != EtcdSnapshotDir {
		t.Errorf("snapshots %+v", s)
	}
}

func contains(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// Round trip through go-systemd's parser: what we render is what it reads.
func TestUnitsRoundTrip(t *testing.T) {
	for _, u := range RoleUnits(Master) {
		data, err := u.Bytes()
		if err != nil {
			t.Fatal(err)
		}
		back, err := systemd.Parse(u.Name, data)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := back.Bytes()
		if !bytes.Equal(data, again) {
			t.Errorf("%s does not round-trip:\n%s\n---\n%s", u.Name, data, again)
		}
	}
}

// unitRoot is a root holding the host's systemd units, a role's rendered
// units and stand-ins for the binaries they run: what systemd-analyze
// needs to load them offline.
func unitRoot(t *testing.T, r Role) (root string, names []string) {
	t.Helper()
	root = t.TempDir()
	unitDir := filepath.Join(root, "etc/systemd/system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "usr/lib/systemd"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", "/usr/lib/systemd/system", filepath.Join(root, "usr/lib/systemd/")).CombinedOutput(); err != nil {
		t.Fatalf("copy host units: %v\n%s", err, out)
	}
	for _, u := range RoleUnits(r) {
		data, _ := u.Bytes()
		if err := os.WriteFile(filepath.Join(unitDir, u.Name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		names = append(names, u.Name)
		for _, k := range []string{"ExecStart", "ExecStartPre", "ExecStartPost", "ExecStopPost"} {
			for _, v := range u.Values("Service", k) {
				bin := strings.Fields(strings.TrimLeft(v, "-@:+!"))[0]
				stub := filepath.Join(root, bin)
				if err := os.MkdirAll(filepath.Dir(stub), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return root, names
}

// systemd-analyze verify: every unit loads with no unknown key or section.
func TestSystemdAnalyzeVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (make deps installs systemd)")
	}
	for _, r := range Roles() {
		root, names := unitRoot(t, r)
		cmd := exec.Command("systemd-analyze", append([]string{"verify", "--root=" + root}, names...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		if err != nil || stderr.Len() > 0 {
			t.Errorf("systemd-analyze verify (%s): %v\n%s", r, err, stderr.String())
		}
	}
}

// maxExposure is each sandboxed unit's `systemd-analyze security` exposure
// (0 safe .. 10 unsafe), measured offline on its rendered unit; before
// the sandbox both were 9.6 ("UNSAFE"). A change that loosens a sandbox
// fails here.
var maxExposure = map[string]float64{
	"kubeup-agent.service":         2.0,
	"kubeup-addon-manager.service": 1.7,
}

var exposureRE = regexp.MustCompile(`Overall exposure level for (\S+): (\d+\.\d+)`)

// systemd-analyze security --offline: the sandboxed units' exposure stays
// within what was measured when they were sandboxed.
func TestSystemdAnalyzeSecurity(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (make deps installs systemd)")
	}
	root, _ := unitRoot(t, Master)
	for _, unit := range slices.Sorted(maps.Keys(maxExposure)) {
		out, _ := exec.Command("systemd-analyze", "security", "--offline=true", "--root="+root, unit).CombinedOutput()
		m := exposureRE.FindStringSubmatch(string(out))
		if m == nil {
			t.Errorf("%s: no exposure level in:\n%s", unit, out)
			continue
		}
		got, _ := strconv.ParseFloat(m[2], 64)
		t.Logf("%s: exposure %.1f", unit, got)
		if got > maxExposure[unit] {
			t.Errorf("%s: exposure %.1f, more than %.1f:\n%s", unit, got, maxExposure[unit], out)
		}
	}
}

// A unit with ProtectSystem=strict does not start (226/NAMESPACE) when a
// ReadWritePaths entry without "-" is missing: each must be made at boot by
// a tmpfiles.d line of the role's image.
func TestReadWritePathsExistAtBoot(t *testing.T) {
	for _, r := range Roles() {
		files, err := RoleImageFiles(r)
		if err != nil {
			t.Fatal(err)
		}
		// Directories of Debian's base system, there before anything runs.
		made := map[string]bool{"/var/lib": true}
		for _, f := range files {
			if !strings.HasPrefix(f.Path, "/usr/lib/tmpfiles.d/") {
				continue
			}
			for _, line := range strings.Split(string(f.Content), "\n") {
				if fields := strings.Fields(line); len(fields) > 1 && (fields[0] == "d" || fields[0] == "f") {
					made[fields[1]] = true
				}
			}
		}
		for _, u := range RoleUnits(r) {
			for _, p := range u.Values("Service", "ReadWritePaths") {
				if !strings.HasPrefix(p, "-") && !made[p] {
					t.Errorf("%s %s: ReadWritePaths=%s is not made by any tmpfiles.d file of the image", r, u.Name, p)
				}
			}
		}
	}
}

func TestSortFiles(t *testing.T) {
	t.Parallel()
	files := []File{{Path: "/b"}, {Path: "/a"}, {Path: "/c"}}
	if err := SortFiles(files); err != nil || files[0].Path != "/a" || files[2].Path != "/c" {
		t.Errorf("sorted %v, %v", files, err)
	}
	err := SortFiles([]File{{Path: "/x"}, {Path: "/a"}, {Path: "/x"}})
	if !errors.Is(err, ErrPathTwice) || !strings.Contains(err.Error(), "/x is written twice") {
		t.Errorf("duplicate path: %v", err)
	}
	for _, r := range Roles() {
		if _, err := RoleImageFiles(r); err != nil {
			t.Errorf("role %s: %v", r, err)
		}
	}
}

// The API server's port gate: ExecStartPre closes it (kubeup-probe gate
// replaces a gate a failed start left), the readiness wait asks on ::1, the
// one source let through, and only then opens the same gate. The CPU
// weights (the control-plane slice's, etcd's and the API server's) are
// raised by the gate's process before it closes the gate (unless a master
// of several is booting: the env file's flags), lowered by the wait's once
// the gate is open, and after any stop where still high. One process
// before the start, none of their own after it.
func TestAPIServerGate(t *testing.T) {
	u := APIServer{}.Unit(Master)
	pre, post := u.Values("Service", "ExecStartPre"), u.Values("Service", "ExecStartPost")
	stopPost := u.Values("Service", "ExecStopPost")
	if len(pre) != 1 || len(post) != 1 || len(stopPost) != 1 {
		t.Fatalf("ExecStartPre %q, ExecStartPost %q, ExecStopPost %q: want 1, 1 and 1 commands", pre, post, stopPost)
	}
	probe := "/usr/local/bin/kubeup-probe "
	wantPre := probe + "gate close apiserver-starting --port=6443 --allow=::1 $KUBEUP_CPU_WEIGHT_FLAGS" +
		" --cpu-weight=controlplane.slice=1000 --cpu-weight=etcd.service=1000 --cpu-weight=kube-apiserver.service=1000"
	if pre[0] != wantPre {
		t.Errorf("ExecStartPre %q: want %q", pre[0], wantPre)
	}
	wait, after, ok := strings.Cut(post[0], " --open-gate=")
	if !ok || !strings.HasPrefix(wait, probe+"wait --url=https://[::1]:6443/readyz ") {
		t.Errorf("ExecStartPost %q: want the readiness wait on [::1] that then opens the gate", post[0])
	}
	if want := "apiserver-starting --cpu-weight=controlplane.slice=200 --cpu-weight=etcd.service=100 --cpu-weight=kube-apiserver.service=100"; after != want {
		t.Errorf("ExecStartPost's flags after the wait's %q: want %q", after, want)
	}
	wantLower := probe + "cpu-weight controlplane.slice=200 etcd.service=100 kube-apiserver.service=100"
	if want := `/bin/sh -c 'read w < /sys/fs/cgroup/controlplane.slice/cpu.weight && [ "$$w" = 200 ] || exec ` + wantLower + `'`; stopPost[0] != want {
		t.Errorf("ExecStopPost %q: want the weights lowered after any stop where still high, %q", stopPost[0], want)
	}
	if ControlPlaneSlice != "controlplane.slice" || controlPlaneCPUWeight != 200 || ProbeBinary != "/usr/local/bin/kubeup-probe" {
		t.Errorf("slice %s=%d, probe %s: update this test", ControlPlaneSlice, controlPlaneCPUWeight, ProbeBinary)
	}
}

func TestPodCIDRFor(t *testing.T) {
	mp := netip.MustParsePrefix
	for _, tc := range []struct {
		pod, machines string
		mask          int
		ip, want      string
	}{
		{"10.244.0.0/16", "10.77.0.0/24", 24, "10.77.0.10", "10.244.10.0/24"},
		{"10.244.0.0/16", "10.77.0.0/24", 24, "10.77.0.100", "10.244.100.0/24"},
		{"10.244.0.0/16", "10.0.0.0/20", 26, "10.0.1.2", "10.244.64.128/26"},
		{"10.244.0.0/16", "10.77.0.0/23", 24, "10.77.1.10", ""}, // host 266 of 256 blocks
		{"10.244.0.0/16", "10.77.0.0/24", 24, "10.78.0.10", ""}, // not in the machine CIDR
	} {
		got, err := PodCIDRFor(mp(tc.pod), tc.mask, mp(tc.machines), netip.MustParseAddr(tc.ip))
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("%s in %s: %s, want an error", tc.ip, tc.machines, got)
		case tc.want != "" && (err != nil || got.String() != tc.want):
			t.Errorf("%s in %s: %s %v, want %s", tc.ip, tc.machines, got, err, tc.want)
		}
	}
}
