package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/images"
	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/images/build"
	"kubeup.dev/kubeup/infra"
	"kubeup.dev/kubeup/infra/qemu"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/health"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/render"
)

// Options are where things are and how long to wait.
type Options struct {
	DataDir  string
	CacheDir string
	// BinDir holds kubeup-agent, kubeup-agent-node, kubeup-probe, kubeup-addons
	// and pulumi-resource-kubeup.
	BinDir string
	// Backend overrides Pulumi's state backend URL.
	Backend string
	// Progress receives one line per phase.
	Progress io.Writer
	// ReadyTimeout bounds each wait (API server, nodes, pods).
	ReadyTimeout time.Duration
	// TimingsFile receives the phase timings as JSON ("" for the cluster
	// directory's timings.json).
	TimingsFile string
	// Artifacts configures image builds when images are missing.
	Artifacts artifacts.Options
}

func (o *Options) defaults() {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 15 * time.Minute
	}
}

// Ports each machine forwards from 127.0.0.1.
const (
	guestSSHPort = 22
)

// Up brings a cluster up and waits until it is Ready.
func Up(ctx context.Context, c *config.Cluster, o Options) (*State, *Timings, error) {
	o.defaults()
	if c.Spec.Target.Provider != config.ProviderLocal {
		return nil, nil, fmt.Errorf("spec.target.provider %q: only the local target is implemented; aws and gcp deployments are not yet", c.Spec.Target.Provider)
	}
	name := c.Metadata.Name
	dir := Dir(o.DataDir, name)
	t := newTimings(name, len(c.Machines()), o.Progress)

	imgs, err := ensureImages(ctx, o, t)
	if err != nil {
		return nil, t, err
	}

	st, err := prepareState(c, o.DataDir)
	if err != nil {
		return nil, t, err
	}
	if st.Accel == "" || c.Spec.Target.Local.Accelerator != config.DefaultAccelerator {
		st.Accel, err = chooseAccel(ctx, c.Spec.Target.Local.Accelerator, o.CacheDir, imgs[components.Node])
		if err != nil {
			return nil, t, err
		}
	}
	t.Accel = st.Accel
	if err := st.save(dir); err != nil {
		return nil, t, err
	}

	bundle, err := pki.LoadOrGenerate(filepath.Join(dir, pkiDir), render.PKICluster(c), pki.Options{})
	if err != nil {
		return nil, t, fmt.Errorf("cluster PKI: %w", err)
	}
	imgRefs, err := Images(o.BinDir)
	if err != nil {
		return nil, t, err
	}
	res, err := render.Render(c, bundle, render.Options{Images: imgRefs})
	if err != nil {
		return nil, t, err
	}
	if err := res.WriteDir(filepath.Join(dir, renderDir)); err != nil {
		return nil, t, err
	}
	kc, err := bundle.Kubeconfig("admin", fmt.Sprintf("https://127.0.0.1:%d", st.APIServerPort), true)
	if err != nil {
		return nil, t, err
	}
	if err := writeFile(filepath.Join(dir, kubeconfigFile), kc, 0o600); err != nil {
		return nil, t, err
	}
	t.phase("rendered machine configs (" + filepath.Join(dir, renderDir) + ")")

	lc, err := localCluster(c, st, res, imgs, dir)
	if err != nil {
		return nil, t, err
	}
	logPath := filepath.Join(dir, "pulumi.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, t, err
	}
	defer logf.Close()
	eng := engine(o, logf)
	if err := eng.UpLocal(ctx, lc); err != nil {
		return nil, t, fmt.Errorf("%w\n(the engine's output is in %s)", err, logPath)
	}
	t.phase(fmt.Sprintf("VMs started (%d machines, %s)", len(lc.Machines), st.Accel))

	if err := waitReady(ctx, o, st, bundle, c, t); err != nil {
		diag := Diagnose(ctx, o.DataDir, st, bundle)
		return st, t, fmt.Errorf("%w\n%s", err, diag)
	}
	t.peakMemory(lc)
	return st, t, t.write(o.TimingsFile, dir)
}

// Images are the container images the rendered configs reference; binDir
// holds the kubeup-addons binary whose image the UI addon runs.
func Images(binDir string) (components.Images, error) {
	addons, err := os.ReadFile(filepath.Join(binDir, "kubeup-addons"))
	if err != nil {
		return components.Images{}, fmt.Errorf("the kubeup-addons binary (make build writes it next to kubeup): %w", err)
	}
	return components.Images{
		Pause: images.PauseImage(), CoreDNS: images.CoreDNSImage(), Testbox: images.TestboxImage(),
		Prometheus: images.PrometheusImage(), LogStore: images.VictoriaLogsImage(), LogAggregator: images.OtelcolImage(),
		UI: images.AddonsImageRef(addons),
	}, nil
}

// ensureImages returns each role's qcow2 image. As root it runs the image
// build, which only reads manifests when nothing changed (so a new agent or
// unit reaches the images); otherwise it uses the images that exist.
func ensureImages(ctx context.Context, o Options, t *Timings) (map[components.Role]string, error) {
	outDir := filepath.Join(o.CacheDir, "vm-images")
	kc, _ := images.Pinned().Component("kubernetes")
	out := map[components.Role]string{}
	var missing []components.Role
	for _, r := range components.Roles() {
		p := filepath.Join(outDir, build.ImageName(r, kc.Version)+".qcow2")
		if _, err := os.Stat(p); err != nil {
			missing = append(missing, r)
		}
		out[r] = p
	}
	switch {
	case os.Geteuid() == 0:
		if len(missing) > 0 {
			fmt.Fprintf(o.Progress, "images missing for %v: building them (kubeup build)\n", missing)
		}
		_, _, err := build.Build(ctx, build.Options{
			Roles: components.Roles(), Formats: []string{"qcow2"}, OutDir: outDir, CacheDir: o.CacheDir,
			Artifacts: o.Artifacts, BinDir: o.BinDir, Progress: o.Progress,
		})
		if err != nil {
			return nil, fmt.Errorf("build images: %w", err)
		}
	case len(missing) > 0:
		return nil, fmt.Errorf("no %v image in %s, and building one needs root: run `sudo kubeup build --format qcow2`", missing, outDir)
	}
	t.phase("images ready")
	return out, nil
}

// prepareState loads the cluster's state or starts a new one, keeping host
// ports stable across runs (so an unchanged cluster is not replaced).
func prepareState(c *config.Cluster, dataDir string) (*State, error) {
	st, err := LoadState(dataDir, c.Metadata.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		st = &State{Name: c.Metadata.Name, Provider: c.Spec.Target.Provider, Created: time.Now().UTC()}
	case err != nil:
		return nil, err
	}
	if want := c.Spec.Target.Local.APIServerPort; want != 0 {
		st.APIServerPort = want
	}
	// Every host port of the cluster differs from the others: kept ones
	// first, then new ones picked around them.
	used := []int{st.APIServerPort}
	for _, ms := range st.Machines {
		used = append(used, ms.AgentPort, ms.SSHPort)
	}
	pick := func(p *int) error {
		if *p != 0 {
			return nil
		}
		var err error
		*p, err = qemu.FreePort(used...)
		used = append(used, *p)
		return err
	}
	if err := pick(&st.APIServerPort); err != nil {
		return nil, err
	}
	var machines []MachineState
	for _, m := range c.Machines() {
		ms, ok := st.Machine(m.Name)
		if !ok {
			ms = MachineState{Name: m.Name}
		}
		if err := pick(&ms.AgentPort); err != nil {
			return nil, err
		}
		ms.Role, ms.IP = m.Role, m.IP.String()
		if len(c.Spec.SSH.AuthorizedKeys) > 0 {
			if err := pick(&ms.SSHPort); err != nil {
				return nil, err
			}
		}
		machines = append(machines, ms)
	}
	st.Machines = machines
	return st, nil
}

// localCluster turns the render into the Pulumi program's input.
func localCluster(c *config.Cluster, st *State, res *render.Result, imgs map[components.Role]string, dir string) (infra.LocalCluster, error) {
	lc := infra.LocalCluster{Name: c.Metadata.Name, Dir: dir, Accel: st.Accel}
	imageSHA := map[components.Role]string{}
	for r, p := range imgs {
		// The manifest's digest names the image content without rehashing it.
		sum, err := fileDigest(strings.TrimSuffix(p, ".qcow2") + ".json")
		if err != nil {
			return lc, err
		}
		imageSHA[r] = sum
	}
	for i, m := range res.Machines {
		ms := st.Machines[i]
		role := components.Role(m.Role)
		seed := filepath.Join(dir, renderDir, render.MachinesDir, m.Name, "seed.iso")
		seedSHA, err := fileDigest(seed)
		if err != nil {
			return lc, err
		}
		fwd := []qemu.Forward{{Name: "agent", HostPort: ms.AgentPort, GuestPort: components.AgentPort}}
		if m.Role == config.RoleMaster && m.Index == 0 {
			fwd = append(fwd, qemu.Forward{Name: "apiserver", HostPort: st.APIServerPort, GuestPort: components.APIServerPort})
		}
		if ms.SSHPort != 0 {
			fwd = append(fwd, qemu.Forward{Name: "ssh", HostPort: ms.SSHPort, GuestPort: guestSSHPort})
		}
		lc.Machines = append(lc.Machines, infra.Machine{
			Name: m.Name, Role: string(m.Role), Image: imgs[role], ImageSHA: imageSHA[role],
			Seed: seed, SeedSHA: seedSHA, CPUs: m.CPUs, MemoryMiB: m.MemoryMiB, DiskBytes: m.DiskBytes,
			Firmware: qemu.UEFI, ClusterMAC: m.ClusterMAC, ManagementMAC: m.ManagementMAC, Forwards: fwd,
		})
	}
	return lc, nil
}

func fileDigest(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:]), nil
}

func engine(o Options, out io.Writer) *infra.Engine {
	return &infra.Engine{
		DataDir: o.DataDir, Backend: o.Backend, PluginDir: o.BinDir, Progress: out,
		PulumiRoot: PulumiRoot(o.CacheDir),
	}
}

// PulumiRoot is the directory whose bin/pulumi is the cached Pulumi CLI
// (the pulumi artifact of images/versions.yaml).
func PulumiRoot(cacheDir string) string {
	matches, _ := filepath.Glob(filepath.Join(cacheDir, "artifacts", "pulumi", "*", "root", "usr", "local", "bin", "pulumi"))
	v, _ := images.Pinned().Component("pulumi")
	for _, m := range matches {
		data, err := os.ReadFile(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(filepath.Dir(m))))), "manifest.json"))
		if err == nil && strings.Contains(string(data), `"version": "`+v.Version+`"`) {
			return filepath.Dir(filepath.Dir(m))
		}
	}
	if len(matches) > 0 {
		return filepath.Dir(filepath.Dir(matches[0]))
	}
	return filepath.Join(cacheDir, "artifacts", "pulumi", "missing", "root", "usr", "local")
}

// chooseAccel resolves the configured accelerator.
func chooseAccel(ctx context.Context, want, cacheDir, image string) (string, error) {
	switch want {
	case qemu.AccelKVM, qemu.AccelTCG:
		return want, nil
	}
	return qemu.ProbeAccel(ctx, cacheDir, image)
}

// waitReady waits for the API server, every node and every kube-system pod.
func waitReady(ctx context.Context, o Options, st *State, bundle *pki.Bundle, c *config.Cluster, t *Timings) error {
	kc, err := bundle.Kubeconfig("admin", fmt.Sprintf("https://127.0.0.1:%d", st.APIServerPort), true)
	if err != nil {
		return err
	}
	cs, err := health.Clientset(kc)
	if err != nil {
		return err
	}
	wait := func(what string, f func(context.Context) error) error {
		wctx, cancel := context.WithTimeout(ctx, o.ReadyTimeout)
		defer cancel()
		if err := f(wctx); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return fmt.Errorf("%s: not within %s: %w", what, o.ReadyTimeout, err)
			}
			return fmt.Errorf("%s: %w", what, err)
		}
		t.phase(what)
		return nil
	}
	if err := wait("API server healthy", func(ctx context.Context) error { return health.WaitAPIServer(ctx, cs) }); err != nil {
		return err
	}
	var names []string
	for _, m := range st.Machines {
		names = append(names, m.Name)
	}
	if err := wait(fmt.Sprintf("all %d nodes Ready", len(names)), func(ctx context.Context) error {
		return health.WaitNodesReady(ctx, cs, names)
	}); err != nil {
		return err
	}
	var expect []string
	for _, a := range []struct {
		on   *bool
		pods []string
	}{
		{c.Spec.Addons.DNS, []string{"coredns"}},
		{c.Spec.Addons.Monitoring, []string{"prometheus"}},
		{c.Spec.Addons.Logging, []string{"victoria-logs", "log-aggregator"}},
		{c.Spec.Addons.UI, []string{"kubeup-ui"}},
	} {
		if config.Enabled(a.on) {
			expect = append(expect, a.pods...)
		}
	}
	return wait("kube-system pods Ready", func(ctx context.Context) error {
		return health.WaitSystemPodsReady(ctx, cs, expect)
	})
}
