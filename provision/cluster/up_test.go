package cluster

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/infra/qemu"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/render"
)

// testConfig is the default cluster with the given pools, validated.
func testConfig(t *testing.T, name string, masters, nodes int, edit func(*config.Cluster)) *config.Cluster {
	t.Helper()
	c := config.Default(name)
	c.Spec.Masters.Count = &masters
	c.Spec.Nodes.Count = &nodes
	if edit != nil {
		edit(c)
	}
	if errs := config.Validate(c); len(errs) > 0 {
		t.Fatal(errs)
	}
	return c
}

const testSSHKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0qZ1kubeuptestkeyAAAAAAAAAAAAAAAAAAAAAAAA test@kubeup"

// ports returns every host port of a state, in a fixed order.
func ports(st *State) []int {
	out := []int{st.APIServerPort}
	for _, m := range st.Machines {
		out = append(out, m.AgentPort)
		if m.SSHPort != 0 {
			out = append(out, m.SSHPort)
		}
	}
	return out
}

func checkDistinctPorts(t *testing.T, st *State) {
	t.Helper()
	seen := map[int]string{}
	check := func(p int, what string) {
		t.Helper()
		if p <= 0 || p > 65535 {
			t.Errorf("%s: port %d is not a port", what, p)
		}
		if prev, ok := seen[p]; ok {
			t.Errorf("%s: port %d is also %s's", what, p, prev)
		}
		seen[p] = what
	}
	check(st.APIServerPort, "apiserver")
	for _, m := range st.Machines {
		check(m.AgentPort, m.Name+" agent")
		if m.SSHPort != 0 {
			check(m.SSHPort, m.Name+" ssh")
		}
	}
}

// A new cluster gets an API server port and one agent port per machine,
// all distinct, and SSH ports only when SSH keys are configured.
func TestPrepareStateNewCluster(t *testing.T) {
	t.Parallel()
	for _, withSSH := range []bool{false, true} {
		c := testConfig(t, "fresh", 3, 2, func(c *config.Cluster) {
			if withSSH {
				c.Spec.SSH.AuthorizedKeys = []string{testSSHKey}
			}
		})
		before := time.Now().UTC()
		st, err := prepareState(c, t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		if st.Name != "fresh" || st.Provider != config.ProviderLocal {
			t.Errorf("ssh=%v: name %q provider %q", withSSH, st.Name, st.Provider)
		}
		if st.Created.Before(before.Add(-time.Second)) || st.Created.Location() != time.UTC {
			t.Errorf("ssh=%v: created %v, want about now in UTC", withSSH, st.Created)
		}
		want := c.Machines()
		if len(st.Machines) != len(want) {
			t.Fatalf("ssh=%v: %d machine states, want %d", withSSH, len(st.Machines), len(want))
		}
		for i, m := range want {
			ms := st.Machines[i]
			if ms.Name != m.Name || ms.Role != m.Role || ms.IP != m.IP.String() {
				t.Errorf("ssh=%v: machine %d is %+v, want %s %s %s", withSSH, i, ms, m.Name, m.Role, m.IP)
			}
			if ms.AgentPort == 0 {
				t.Errorf("ssh=%v: %s has no agent port", withSSH, ms.Name)
			}
			if withSSH != (ms.SSHPort != 0) {
				t.Errorf("ssh=%v: %s has SSH port %d", withSSH, ms.Name, ms.SSHPort)
			}
		}
		if st.APIServerPort == 0 {
			t.Errorf("ssh=%v: no API server port", withSSH)
		}
		checkDistinctPorts(t, st)
	}
}

// Ports are kept across runs: a second prepareState after the state was
// saved returns every port again, new machines and newly enabled SSH get
// ports distinct from the kept ones.
func TestPrepareStateKeepsPorts(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	c := testConfig(t, "keep", 1, 2, nil)
	first, err := prepareState(c, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	first.Accel = qemu.AccelTCG
	if err := first.save(Dir(dataDir, "keep")); err != nil {
		t.Fatal(err)
	}

	again, err := prepareState(c, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(ports(again), ports(first)) {
		t.Errorf("ports changed across runs: %v, then %v", ports(first), ports(again))
	}
	if !again.Created.Equal(first.Created) || again.Accel != qemu.AccelTCG {
		t.Errorf("the saved state was not loaded: created %v (was %v), accel %q", again.Created, first.Created, again.Accel)
	}

	// One more node and SSH: the kept ports stay, the new ones avoid them.
	grown := testConfig(t, "keep", 1, 3, func(c *config.Cluster) { c.Spec.SSH.AuthorizedKeys = []string{testSSHKey} })
	st, err := prepareState(grown, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.APIServerPort != first.APIServerPort {
		t.Errorf("API server port %d, was %d", st.APIServerPort, first.APIServerPort)
	}
	for _, old := range first.Machines {
		m, ok := st.Machine(old.Name)
		if !ok {
			t.Fatalf("machine %s lost", old.Name)
		}
		if m.AgentPort != old.AgentPort {
			t.Errorf("%s agent port %d, was %d", old.Name, m.AgentPort, old.AgentPort)
		}
		if m.SSHPort == 0 {
			t.Errorf("%s got no SSH port once keys were set", old.Name)
		}
	}
	if m, ok := st.Machine("node-2"); !ok || m.AgentPort == 0 || m.SSHPort == 0 {
		t.Errorf("the new node: %+v %v", m, ok)
	}
	checkDistinctPorts(t, st)

	// A removed machine's state goes away.
	shrunk := testConfig(t, "keep", 1, 1, nil)
	st, err = prepareState(shrunk, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Machines) != 2 {
		t.Errorf("machines after removing a node: %+v", st.Machines)
	}
}

// spec.target.local.apiServerPort overrides both a new and a kept port.
func TestPrepareStateAPIServerPortOverride(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	c := testConfig(t, "pinned", 1, 1, nil)
	st, err := prepareState(c, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.save(Dir(dataDir, "pinned")); err != nil {
		t.Fatal(err)
	}
	// A port outside the range FreePort picks from, so it differs from the
	// saved one.
	const want = 1999
	c.Spec.Target.Local.APIServerPort = want
	st, err = prepareState(c, dataDir)
	if err != nil {
		t.Fatal(err)
	}
	if st.APIServerPort != want {
		t.Errorf("API server port %d, want the configured %d", st.APIServerPort, want)
	}
	checkDistinctPorts(t, st)

	fresh := testConfig(t, "pinned-new", 1, 1, func(c *config.Cluster) { c.Spec.Target.Local.APIServerPort = want })
	st, err = prepareState(fresh, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if st.APIServerPort != want {
		t.Errorf("new cluster: API server port %d, want the configured %d", st.APIServerPort, want)
	}
}

// A state file that does not parse is an error, not a new cluster (which
// would pick new ports and replace every VM).
func TestPrepareStateCorruptState(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	c := testConfig(t, "broken", 1, 1, nil)
	if err := writeFile(filepath.Join(Dir(dataDir, "broken"), stateFile), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if st, err := prepareState(c, dataDir); err == nil || !strings.Contains(err.Error(), stateFile) {
		t.Errorf("got %+v, %v; want an error naming %s", st, err, stateFile)
	}
}

func sha256File(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}

// fakeImages writes a qcow2 and a different manifest per role.
func fakeImages(t *testing.T, dir string) map[components.Role]string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	out := map[components.Role]string{}
	for _, r := range components.Roles() {
		base := filepath.Join(dir, "kubeup-"+string(r)+"-test")
		if err := os.WriteFile(base+".qcow2", []byte("disk of "+r), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(base+".json", []byte(`{"role": "`+string(r)+`"}`), 0o644); err != nil {
			t.Fatal(err)
		}
		out[r] = base + ".qcow2"
	}
	return out
}

// renderCluster renders c into dir/render with a fresh PKI and the images of
// a fake kubeup-addons binary.
func renderCluster(t *testing.T, c *config.Cluster, dir string) *render.Result {
	t.Helper()
	binDir := filepath.Join(dir, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(binDir, "kubeup-addons"), []byte("fake addons binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	imgs, err := Images(binDir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.Generate(render.PKICluster(c), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := render.Render(c, b, render.Options{Images: imgs})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.WriteDir(filepath.Join(dir, renderDir)); err != nil {
		t.Fatal(err)
	}
	return res
}

// localCluster is the Pulumi program's input: each machine's image, seed,
// digests (whose changes replace a VM), size, MACs and port forwards.
func TestLocalCluster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := testConfig(t, "lc", 3, 2, func(c *config.Cluster) {
		c.Spec.SSH.AuthorizedKeys = []string{testSSHKey}
		c.Spec.Nodes.CPUs = 3
	})
	st, err := prepareState(c, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	st.Accel = qemu.AccelTCG
	// A machine without an SSH port (e.g. a state from before SSH was
	// configured) gets no ssh forward.
	st.Machines[1].SSHPort = 0
	res := renderCluster(t, c, dir)
	imgs := fakeImages(t, filepath.Join(dir, "images"))

	lc, err := localCluster(c, st, res, imgs, dir)
	if err != nil {
		t.Fatal(err)
	}
	if lc.Name != "lc" || lc.Dir != dir || lc.Accel != qemu.AccelTCG {
		t.Errorf("cluster %q dir %q accel %q", lc.Name, lc.Dir, lc.Accel)
	}
	want := c.Machines()
	if len(lc.Machines) != len(want) {
		t.Fatalf("%d machines, want %d", len(lc.Machines), len(want))
	}
	for i, cm := range want {
		m := lc.Machines[i]
		ms, _ := st.Machine(cm.Name)
		if m.Name != cm.Name || m.Role != string(cm.Role) {
			t.Errorf("machine %d is %s/%s, want %s/%s", i, m.Name, m.Role, cm.Name, cm.Role)
			continue
		}
		role := components.Role(cm.Role)
		if m.Image != imgs[role] {
			t.Errorf("%s image %s, want %s", m.Name, m.Image, imgs[role])
		}
		if want := sha256File(t, strings.TrimSuffix(imgs[role], ".qcow2")+".json"); m.ImageSHA != want {
			t.Errorf("%s ImageSHA %s, want the manifest's sha256 %s", m.Name, m.ImageSHA, want)
		}
		seed := filepath.Join(dir, renderDir, render.MachinesDir, cm.Name, "seed.iso")
		if m.Seed != seed {
			t.Errorf("%s seed %s, want %s", m.Name, m.Seed, seed)
		}
		if want := sha256File(t, seed); m.SeedSHA != want {
			t.Errorf("%s SeedSHA %s, want the seed's sha256 %s", m.Name, m.SeedSHA, want)
		}
		if m.CPUs != cm.CPUs || m.MemoryMiB != cm.MemoryMiB || m.DiskBytes != cm.DiskBytes {
			t.Errorf("%s size %d CPUs %d MiB %d bytes, want %d %d %d", m.Name, m.CPUs, m.MemoryMiB, m.DiskBytes, cm.CPUs, cm.MemoryMiB, cm.DiskBytes)
		}
		if m.Firmware != qemu.UEFI {
			t.Errorf("%s firmware %q, want UEFI", m.Name, m.Firmware)
		}
		if m.ClusterMAC != render.ClusterMAC(cm.IP) || m.ManagementMAC != render.ManagementMAC(cm.IP) {
			t.Errorf("%s MACs %s %s, want %s %s", m.Name, m.ClusterMAC, m.ManagementMAC, render.ClusterMAC(cm.IP), render.ManagementMAC(cm.IP))
		}
		if m.ClusterMAC == m.ManagementMAC {
			t.Errorf("%s: both NICs have MAC %s", m.Name, m.ClusterMAC)
		}

		// Three masters: each forwards its API server to its own port;
		// the cluster's port is the host endpoint's.
		wantFwd := []qemu.Forward{{Name: "agent", HostPort: ms.AgentPort, GuestPort: components.AgentPort}}
		if cm.Role == config.RoleMaster {
			if ms.APIServerPort == 0 || ms.APIServerPort == st.APIServerPort {
				t.Errorf("%s API server port %d (cluster's %d): want one of its own", cm.Name, ms.APIServerPort, st.APIServerPort)
			}
			wantFwd = append(wantFwd, qemu.Forward{Name: "apiserver", HostPort: ms.APIServerPort, GuestPort: components.APIServerPort})
		}
		if ms.SSHPort != 0 {
			wantFwd = append(wantFwd, qemu.Forward{Name: "ssh", HostPort: ms.SSHPort, GuestPort: 22})
		}
		if !reflect.DeepEqual(m.Forwards, wantFwd) {
			t.Errorf("%s forwards %+v, want %+v", m.Name, m.Forwards, wantFwd)
		}
	}

	// Spelled out, so that a change in which machines forward what shows.
	byName := map[string][]string{}
	for _, m := range lc.Machines {
		for _, f := range m.Forwards {
			byName[f.Name] = append(byName[f.Name], m.Name)
		}
	}
	wantNames := map[string][]string{
		"agent":     {"master-0", "master-1", "master-2", "node-0", "node-1"},
		"apiserver": {"master-0", "master-1", "master-2"},
		"ssh":       {"master-0", "master-2", "node-0", "node-1"},
	}
	if !reflect.DeepEqual(byName, wantNames) {
		t.Errorf("forwards by name %v, want %v", byName, wantNames)
	}
	ep := lc.Endpoint
	if ep == nil {
		t.Fatal("three masters and no host endpoint")
	}
	var wantBackends []string
	for _, ms := range st.Machines[:3] {
		wantBackends = append(wantBackends, fmt.Sprintf("127.0.0.1:%d", ms.APIServerPort))
	}
	if ep.Listen != fmt.Sprintf("127.0.0.1:%d", st.APIServerPort) || !reflect.DeepEqual(ep.Backends, wantBackends) {
		t.Errorf("host endpoint %s over %v, want 127.0.0.1:%d over %v", ep.Listen, ep.Backends, st.APIServerPort, wantBackends)
	}
	for _, f := range []string{ep.CAFile, ep.CertFile, ep.KeyFile} {
		if !strings.HasPrefix(f, filepath.Join(dir, pkiDir)+"/") {
			t.Errorf("host endpoint file %s is not in the cluster's PKI directory", f)
		}
	}
	if lc.Machines[0].ImageSHA == lc.Machines[3].ImageSHA || lc.Machines[0].SeedSHA == lc.Machines[1].SeedSHA {
		t.Error("roles share an image digest or machines share a seed digest")
	}
}

// Without an image's manifest or a machine's seed there is no digest, and
// so no program.
// One master: its API server is the cluster's port, and the host has no
// endpoint process (nothing to fail over to).
func TestLocalClusterOneMaster(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := testConfig(t, "one", 1, 1, nil)
	st, err := prepareState(c, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	lc, err := localCluster(c, st, renderCluster(t, c, dir), fakeImages(t, filepath.Join(dir, "images")), dir)
	if err != nil {
		t.Fatal(err)
	}
	if lc.Endpoint != nil {
		t.Errorf("one master and a host endpoint %+v", lc.Endpoint)
	}
	if st.Machines[0].APIServerPort != 0 {
		t.Errorf("master-0 has an API server port of its own (%d) beside the cluster's", st.Machines[0].APIServerPort)
	}
	want := qemu.Forward{Name: "apiserver", HostPort: st.APIServerPort, GuestPort: components.APIServerPort}
	if !slices.Contains(lc.Machines[0].Forwards, want) {
		t.Errorf("master-0 forwards %+v, want %+v among them", lc.Machines[0].Forwards, want)
	}
}

func TestLocalClusterMissingFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	c := testConfig(t, "missing", 1, 1, nil)
	st, err := prepareState(c, filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	res := renderCluster(t, c, dir)
	imgs := fakeImages(t, filepath.Join(dir, "images"))
	manifest := strings.TrimSuffix(imgs[components.Node], ".qcow2") + ".json"
	if err := os.Remove(manifest); err != nil {
		t.Fatal(err)
	}
	if _, err := localCluster(c, st, res, imgs, dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without %s: %v", manifest, err)
	}

	imgs = fakeImages(t, filepath.Join(dir, "images"))
	seed := filepath.Join(dir, renderDir, render.MachinesDir, "node-0", "seed.iso")
	if err := os.Remove(seed); err != nil {
		t.Fatal(err)
	}
	if _, err := localCluster(c, st, res, imgs, dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("without %s: %v", seed, err)
	}
}

// testBringUp is a bringUp whose progress goes to buf.
func testBringUp(t *testing.T, buf *bytes.Buffer, readyTimeout time.Duration) *bringUp {
	return &bringUp{
		opts:    Options{DataDir: t.TempDir(), ReadyTimeout: readyTimeout, Progress: buf},
		timings: newTimings("x", 1, buf),
		// No machines: a wait step's diagnosis reaches no VM or agent.
		state: &State{Name: "x"},
	}
}

func phaseNames(ts *Timings) []string {
	var out []string
	for _, p := range ts.Phases {
		out = append(out, p.Name)
	}
	return out
}

// Steps run in order; a detail follows the name in the progress line and
// the timings; only wait steps are bounded by ReadyTimeout.
func TestRunStepsInOrder(t *testing.T) {
	t.Parallel()
	const timeout = 5 * time.Second
	var buf bytes.Buffer
	u := testBringUp(t, &buf, timeout)
	var ran []string
	record := func(name, detail string, wait bool) step {
		return step{name: name, wait: wait, run: func(ctx context.Context, got *bringUp) (string, error) {
			if got != u {
				t.Errorf("%s: ran with another bringUp", name)
			}
			dl, ok := ctx.Deadline()
			switch {
			case wait && !ok:
				t.Errorf("%s: a wait step without a deadline", name)
			case wait && (time.Until(dl) > timeout || time.Until(dl) < timeout-2*time.Second):
				t.Errorf("%s: deadline in %s, want about %s", name, time.Until(dl), timeout)
			case !wait && ok:
				t.Errorf("%s: a step that is not a wait has a deadline in %s", name, time.Until(dl))
			}
			ran = append(ran, name)
			return detail, nil
		}}
	}
	steps := []step{
		record("first", "", false),
		record("second", "7 machines", false),
		record("third", "", true),
		record("fourth", "3", true),
	}
	if err := runSteps(context.Background(), u, steps); err != nil {
		t.Fatal(err)
	}
	if want := []string{"first", "second", "third", "fourth"}; !reflect.DeepEqual(ran, want) {
		t.Errorf("ran %v, want %v", ran, want)
	}
	want := []string{"first", "second (7 machines)", "third", "fourth (3)"}
	if got := phaseNames(u.timings); !reflect.DeepEqual(got, want) {
		t.Errorf("phases %q, want %q", got, want)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("progress:\n%s", buf.String())
	}
	for i, l := range lines {
		if !strings.HasPrefix(l, "[") || !strings.HasSuffix(l, "] "+want[i]) {
			t.Errorf("progress line %q, want [elapsed] %s", l, want[i])
		}
	}
}

// The first failing step stops the run; its error names the step and wraps
// the cause; a wait step's error carries the diagnosis and says when the
// wait ran out of time.
func TestRunStepsFailure(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	ok := func(context.Context, *bringUp) (string, error) { return "", nil }
	fail := func(context.Context, *bringUp) (string, error) { return "", boom }
	expire := func(ctx context.Context, _ *bringUp) (string, error) {
		<-ctx.Done()
		return "", ctx.Err()
	}
	cases := []struct {
		name   string
		failed step
		prefix string
		target error
		diag   bool
	}{
		{"plain step", step{name: "cluster PKI", run: fail}, `step "cluster PKI": boom`, boom, false},
		{"wait step error", step{name: "all nodes Ready", run: fail, wait: true}, "all nodes Ready: boom\ndiagnosis:", boom, true},
		{"wait step deadline", step{name: "API server healthy", run: expire, wait: true},
			"API server healthy: not within 200ms: context deadline exceeded\ndiagnosis:", context.DeadlineExceeded, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			u := testBringUp(t, &buf, 200*time.Millisecond)
			after := false
			steps := []step{
				{name: "before", run: ok},
				c.failed,
				{name: "after", run: func(context.Context, *bringUp) (string, error) { after = true; return "", nil }},
			}
			// The outer deadline only keeps a wait step that lost its own
			// from hanging the test.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := runSteps(ctx, u, steps)
			if err == nil {
				t.Fatal("no error")
			}
			if !strings.HasPrefix(err.Error(), c.prefix) {
				t.Errorf("error %q, want it to start with %q", err, c.prefix)
			}
			if !errors.Is(err, c.target) {
				t.Errorf("error %q does not wrap %v", err, c.target)
			}
			if got := strings.Contains(err.Error(), "not within"); got != errors.Is(c.target, context.DeadlineExceeded) {
				t.Errorf("error %q: says \"not within\" = %v", err, got)
			}
			if got := strings.Contains(err.Error(), "diagnosis:"); got != c.diag {
				t.Errorf("error %q: diagnosis = %v, want %v", err, got, c.diag)
			}
			if after {
				t.Error("a step ran after the failure")
			}
			if got := phaseNames(u.timings); !reflect.DeepEqual(got, []string{"before"}) {
				t.Errorf("phases %q, want only the step before the failure", got)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %s: the wait step was not bounded by ReadyTimeout (200ms)", d)
			}
		})
	}
}

// The local target's steps, in order: a reordering shows here.
func TestStepsForLocal(t *testing.T) {
	t.Parallel()
	steps, err := stepsFor(config.ProviderLocal)
	if err != nil {
		t.Fatal(err)
	}
	type named struct {
		name string
		wait bool
	}
	var got []named
	for _, s := range steps {
		if s.run == nil {
			t.Errorf("step %q has no run", s.name)
		}
		got = append(got, named{s.name, s.wait})
	}
	want := []named{
		{"images ready", false},
		{"cluster state", false},
		{"cluster PKI", false},
		{"rendered machine configs", false},
		{"VMs started", false},
		{"API server healthy", true},
		{"all nodes Ready", true},
		{"kube-system pods Ready", true},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("local steps\n got %v\nwant %v", got, want)
	}
}

// The metal target's steps, in order.
func TestStepsForMetal(t *testing.T) {
	t.Parallel()
	steps, err := stepsFor(config.ProviderMetal)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range steps {
		got = append(got, fmt.Sprintf("%s/%v", s.name, s.wait))
	}
	want := "images ready/false cluster state/false cluster PKI/false rendered machine configs/false network boot assets/false boot server serving/false machines installed/false API server healthy/true all nodes Ready/true kube-system pods Ready/true"
	if strings.Join(got, " ") != want {
		t.Errorf("metal steps\n got %s\nwant %s", strings.Join(got, " "), want)
	}
}

func TestStepsForOtherProviders(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"azure", ""} {
		steps, err := stepsFor(p)
		if err == nil || steps != nil {
			t.Errorf("%q: %d steps, %v", p, len(steps), err)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, "spec.target.provider") || !strings.Contains(msg, `"`+p+`"`) {
			t.Errorf("%q: error %q does not name spec.target.provider and the value", p, msg)
		}
	}
}

// The clouds' steps, in order: credentials before anything is built or
// created, the load balancer before the PKI and the render that name it.
func TestStepsForClouds(t *testing.T) {
	t.Parallel()
	for _, p := range []string{config.ProviderAWS, config.ProviderGCP} {
		steps, err := stepsFor(p)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, s := range steps {
			got = append(got, fmt.Sprintf("%s/%v", s.name, s.wait))
		}
		want := "cloud credentials/false vCPU quota/false images ready/false cluster state/false provider plugin/false images published/false network and API load balancer/false cluster PKI/false rendered machine configs/false machines started/false API server healthy/true all nodes Ready/true kube-system pods Ready/true"
		if strings.Join(got, " ") != want {
			t.Errorf("%s steps\n got %s\nwant %s", p, strings.Join(got, " "), want)
		}
	}
}

// Up refuses a target it cannot deploy before doing anything.
func TestUpUnknownProvider(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	c := testConfig(t, "cloud", 1, 1, nil)
	c.Spec.Target.Provider = "azure"
	st, ts, err := Up(context.Background(), c, Options{DataDir: dataDir})
	if err == nil || !strings.Contains(err.Error(), "spec.target.provider") || st != nil || ts != nil {
		t.Errorf("Up on azure: %v %v %v", st, ts, err)
	}
	if entries, _ := os.ReadDir(dataDir); len(entries) != 0 {
		t.Errorf("Up on azure wrote %v", entries)
	}
}
