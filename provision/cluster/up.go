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
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/kubernetes"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/images"
	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/images/build"
	"kubeup.dev/kubeup/images/disk"
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
	// KeepServing: on the metal target, the boot server keeps serving
	// after the cluster is Ready, until ctx ends (Ctrl-C).
	KeepServing bool
	// InstallTimeout bounds the metal target's wait for every machine to
	// network-boot and install (default 1h: someone powers them on).
	InstallTimeout time.Duration
	// Replace names machines to recreate from their images on the way
	// (kubeup replace; see CheckReplace).
	Replace []string
	// PurgeImages: down on a cloud also removes the images published in
	// the cluster's location (kept by default for the next cluster).
	PurgeImages bool
	// SkipQuotaCheck: up on a cloud does not read the vCPU quotas first.
	SkipQuotaCheck bool
}

func (o *Options) defaults() {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 15 * time.Minute
	}
	if o.InstallTimeout == 0 {
		o.InstallTimeout = time.Hour
	}
}

// Ports each machine forwards from 127.0.0.1.
const (
	guestSSHPort = 22
)

// Up brings a cluster up and waits until it is Ready: it runs the target's
// steps (localSteps) in order over one bringUp value, printing one progress
// line per step and recording it in the timings.
func Up(ctx context.Context, c *config.Cluster, o Options) (*State, *Timings, error) {
	o.defaults()
	steps, err := stepsFor(c.Spec.Target.Provider)
	if err != nil {
		return nil, nil, err
	}
	if len(o.Replace) > 0 {
		if err := CheckReplace(c, o.DataDir, o.Replace); err != nil {
			return nil, nil, err
		}
		steps = replaceSteps()
	}
	u := &bringUp{cfg: c, opts: o, dir: Dir(o.DataDir, c.Metadata.Name)}
	switch c.Spec.Target.Provider {
	case config.ProviderMetal, config.ProviderAWS:
		u.imageFormat = disk.FormatRaw
	case config.ProviderGCP:
		u.imageFormat = disk.FormatGCE
	}
	u.timings = newTimings(c.Metadata.Name, len(c.Machines()), o.Progress)
	err = runSteps(ctx, u, steps)
	for _, c := range u.closers {
		_ = c.Close()
	}
	if u.metal != nil {
		err = u.metal.finish(ctx, err, o)
	}
	if err != nil {
		return u.state, u.timings, err
	}
	u.timings.peakMemory(u.local)
	return u.state, u.timings, u.timings.write(o.TimingsFile, u.dir)
}

// stepsFor is the bring-up of a target.
func stepsFor(provider string) ([]step, error) {
	switch provider {
	case config.ProviderLocal:
		return localSteps(), nil
	case config.ProviderMetal:
		return metalSteps(), nil
	case config.ProviderAWS, config.ProviderGCP:
		return cloudSteps(), nil
	}
	return nil, fmt.Errorf("spec.target.provider %q is not one of local, metal, aws, gcp", provider)
}

// localSteps is the bring-up of a local cluster: QEMU VMs on a vde switch,
// deployed through kubeup's Pulumi provider.
func localSteps() []step {
	return []step{
		{name: "images ready", run: ensureImages},
		{name: "cluster state", run: prepareLocalState},
		{name: "cluster PKI", run: loadPKI},
		{name: "rendered machine configs", run: renderMachines},
		{name: "VMs started", run: deployLocal},
		{name: "API server healthy", run: waitAPIServer, wait: true},
		{name: "all nodes Ready", run: waitNodes, wait: true},
		{name: "kube-system pods Ready", run: waitSystemPods, wait: true},
	}
}

// bringUp is the state the steps of an `up` share: each step reads what the
// steps before it left and adds its own part.
type bringUp struct {
	cfg     *config.Cluster
	opts    Options
	dir     string // the cluster's directory
	timings *Timings

	images map[components.Role]string // each role's qcow2, or raw on metal (ensureImages)
	// imageFormat is the images' format the target needs ("" for qcow2).
	imageFormat string
	metal       *metalBoot           // the metal target's boot server (startBootServer)
	state       *State               // ports, machines, accelerator (prepareLocalState)
	bundle      *pki.Bundle          // loadPKI
	render      *render.Result       // renderMachines
	local       infra.LocalCluster   // deployLocal
	client      kubernetes.Interface // the admin client of the waits
	cloud       *cloudBringUp        // the cloud targets' part (prepareCloudState)
	closers     []io.Closer          // log files to close at the end
}

// step is one named step of a bring-up. run returns a detail that the
// progress line and the timings show after the name, in parentheses.
type step struct {
	name string
	run  func(ctx context.Context, u *bringUp) (detail string, err error)
	// wait: the step waits for the cluster, bounded by Options.ReadyTimeout;
	// when it fails, the error carries a diagnosis of every machine.
	wait bool
}

// runSteps runs steps in order and stops at the first failure, whose error
// names the step (a wait's error reads "API server healthy: not within
// 15m0s: ..." followed by the diagnosis).
func runSteps(ctx context.Context, u *bringUp, steps []step) error {
	for _, s := range steps {
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if s.wait {
			sctx, cancel = context.WithTimeout(ctx, u.opts.ReadyTimeout)
		}
		detail, err := s.run(sctx, u)
		cancel()
		if err != nil {
			return u.stepError(ctx, s, err)
		}
		name := s.name
		if detail != "" {
			name += " (" + detail + ")"
		}
		u.timings.phase(name)
	}
	return nil
}

func (u *bringUp) stepError(ctx context.Context, s step, err error) error {
	if !s.wait {
		return fmt.Errorf("step %q: %w", s.name, err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%s: not within %s: %w", s.name, u.opts.ReadyTimeout, err)
	} else {
		err = fmt.Errorf("%s: %w", s.name, err)
	}
	return fmt.Errorf("%w\n%s", err, Diagnose(ctx, u.opts.DataDir, u.state, u.bundle))
}

// prepareLocalState loads or starts the cluster's state (host ports kept
// across runs), resolves the accelerator and saves the state.
func prepareLocalState(ctx context.Context, u *bringUp) (string, error) {
	st, err := prepareState(u.cfg, u.opts.DataDir)
	if err != nil {
		return "", err
	}
	if st.Accel == "" || u.cfg.Spec.Target.Local.Accelerator != config.DefaultAccelerator {
		st.Accel, err = chooseAccel(ctx, u.cfg.Spec.Target.Local.Accelerator, u.opts.CacheDir, u.images[components.Node])
		if err != nil {
			return "", err
		}
	}
	u.state, u.timings.Accel = st, st.Accel
	return st.Accel, st.save(u.dir)
}

// loadPKI loads the cluster's PKI, or generates it on the first up.
func loadPKI(_ context.Context, u *bringUp) (string, error) {
	pc := render.PKICluster(u.cfg)
	if u.cloud != nil {
		// The API load balancer's name is how clients reach the API.
		pc.ExtraAPIServerSANs = append(pc.ExtraAPIServerSANs, u.cloud.endpoint)
	}
	b, err := pki.LoadOrGenerate(filepath.Join(u.dir, pkiDir), pc, render.PKIOptions(u.cfg))
	if err != nil {
		return "", err
	}
	u.bundle = b
	return "", nil
}

// renderMachines renders every machine's cloud-init seed into the cluster
// directory and writes the admin kubeconfig.
func renderMachines(_ context.Context, u *bringUp) (string, error) {
	imgRefs, err := Images(u.opts.BinDir)
	if err != nil {
		return "", err
	}
	var join []string
	for _, m := range u.state.Machines {
		if m.EtcdJoin {
			join = append(join, m.Name)
		}
	}
	ro := render.Options{Images: imgRefs, EtcdJoin: join, Emulated: u.state.Accel == qemu.AccelTCG}
	if u.cloud != nil {
		ro.Policy, ro.APIEndpoint = u.cloud.target.policy(), u.state.APIEndpoint
		ro.MasterLocalAddresses = u.cloud.target.masterLocalAddresses(u.cloud.endpoint)
	}
	res, err := render.Render(u.cfg, u.bundle, ro)
	if err != nil {
		return "", err
	}
	out := filepath.Join(u.dir, renderDir)
	if err := res.WriteDir(out); err != nil {
		return "", err
	}
	u.render = res
	kc, err := u.adminKubeconfig()
	if err != nil {
		return "", err
	}
	return out, writeFile(filepath.Join(u.dir, kubeconfigFile), kc, 0o600)
}

func (u *bringUp) adminKubeconfig() ([]byte, error) {
	return u.bundle.Kubeconfig("admin", u.state.APIServerURL(), true)
}

// deployLocal runs the Pulumi program of the local target: the switch and
// one VM per machine. The engine's output goes to pulumi.log.
func deployLocal(ctx context.Context, u *bringUp) (string, error) {
	lc, err := localCluster(u.cfg, u.state, u.render, u.images, u.dir)
	if err != nil {
		return "", err
	}
	u.local = lc
	logPath := filepath.Join(u.dir, "pulumi.log")
	logf, err := os.Create(logPath)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	if err := engine(u.opts, logf).UpLocal(ctx, lc, u.opts.Replace...); err != nil {
		return "", fmt.Errorf("%w\n(the engine's output is in %s)", err, logPath)
	}
	return fmt.Sprintf("%d machines, %s", len(lc.Machines), u.state.Accel), nil
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
func ensureImages(ctx context.Context, u *bringUp) (string, error) {
	o := u.opts
	outDir := filepath.Join(o.CacheDir, "vm-images")
	kc, _ := images.Pinned().Component("kubernetes")
	out := map[components.Role]string{}
	var missing []components.Role
	formats := []string{"qcow2"}
	if u.imageFormat != "" && u.imageFormat != "qcow2" {
		formats = append(formats, u.imageFormat)
	}
	for _, r := range components.Roles() {
		p := filepath.Join(outDir, build.ImageName(r, kc.Version)+"."+disk.Ext(formats[len(formats)-1]))
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
			Roles: components.Roles(), Formats: formats, OutDir: outDir, CacheDir: o.CacheDir,
			Artifacts: o.Artifacts, BinDir: o.BinDir, Progress: o.Progress,
		})
		if err != nil {
			return "", fmt.Errorf("build images: %w", err)
		}
	case len(missing) > 0:
		return "", fmt.Errorf("no %v image in %s, and building one needs root: run `sudo kubeup build --format %s`", missing, outDir, strings.Join(formats, ","))
	}
	u.images = out
	return "", nil
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
		used = append(used, ms.AgentPort, ms.SSHPort, ms.APIServerPort)
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
		// With several masters each forwards its API server to a port of
		// its own, and the cluster's port is the host's endpoint over them.
		if m.Role == config.RoleMaster && len(c.Masters()) > 1 {
			if err := pick(&ms.APIServerPort); err != nil {
				return nil, err
			}
		} else {
			ms.APIServerPort = 0
		}
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
		switch {
		case ms.APIServerPort != 0:
			fwd = append(fwd, qemu.Forward{Name: "apiserver", HostPort: ms.APIServerPort, GuestPort: components.APIServerPort})
			ep := lc.Endpoint
			if ep == nil {
				pkiPath := func(f string) string { return filepath.Join(dir, pkiDir, f) }
				ep = &infra.Endpoint{Listen: fmt.Sprintf("127.0.0.1:%d", st.APIServerPort),
					CAFile: pkiPath("kubernetes-ca.crt"), CertFile: pkiPath("admin.crt"), KeyFile: pkiPath("admin.key")}
				lc.Endpoint = ep
			}
			ep.Backends = append(ep.Backends, fmt.Sprintf("127.0.0.1:%d", ms.APIServerPort))
		case m.Role == config.RoleMaster && m.Index == 0:
			fwd = append(fwd, qemu.Forward{Name: "apiserver", HostPort: st.APIServerPort, GuestPort: components.APIServerPort})
		}
		if ms.SSHPort != 0 {
			fwd = append(fwd, qemu.Forward{Name: "ssh", HostPort: ms.SSHPort, GuestPort: guestSSHPort})
		}
		lc.Machines = append(lc.Machines, infra.Machine{
			Name: m.Name, Role: string(m.Role), Image: imgs[role], ImageSHA: imageSHA[role],
			Seed: seed, SeedSHA: seedSHA, CPUs: m.CPUs, MemoryMiB: m.MemoryMiB, DiskBytes: m.DiskBytes,
			Firmware: qemu.Firmware(m.Firmware), ClusterMAC: m.ClusterMAC, ManagementMAC: m.ManagementMAC, Forwards: fwd,
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

// waitAPIServer waits until the API server answers /readyz.
func waitAPIServer(ctx context.Context, u *bringUp) (string, error) {
	kc, err := u.adminKubeconfig()
	if err != nil {
		return "", err
	}
	if u.client, err = health.Clientset(kc); err != nil {
		return "", err
	}
	return "", health.WaitAPIServer(ctx, u.client)
}

// waitNodes waits until every machine's Node is Ready.
func waitNodes(ctx context.Context, u *bringUp) (string, error) {
	var names []string
	for _, m := range u.state.Machines {
		names = append(names, m.Name)
	}
	return strconv.Itoa(len(names)), health.WaitNodesReady(ctx, u.client, names)
}

// waitSystemPods waits until every kube-system pod is Ready and each
// enabled addon's workloads have pods.
func waitSystemPods(ctx context.Context, u *bringUp) (string, error) {
	expect, err := addons.Workloads(u.render.Cluster)
	if err != nil {
		return "", err
	}
	return "", health.WaitSystemPodsReady(ctx, u.client, expect)
}
