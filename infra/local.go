package infra

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/blang/semver"
	"github.com/pulumi/pulumi/sdk/v3/go/auto"
	"github.com/pulumi/pulumi/sdk/v3/go/auto/optup"
	"github.com/pulumi/pulumi/sdk/v3/go/common/workspace"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/infra/provider"
	"kubeup.dev/kubeup/infra/qemu"
)

// Project is the Pulumi project every kubeup stack belongs to.
const Project = "kubeup"

// Machine is one local VM to deploy.
type Machine struct {
	Name          string
	Role          string
	Image         string
	ImageSHA      string // changes replace the VM
	Seed          string
	SeedSHA       string // changes replace the VM
	CPUs          int
	MemoryMiB     int64
	DiskBytes     int64
	Firmware      qemu.Firmware
	ClusterMAC    string
	ManagementMAC string
	Forwards      []qemu.Forward
}

// LocalCluster is what the local target deploys.
type LocalCluster struct {
	Name string
	// Dir is the cluster's directory: the switch and each VM live under it.
	Dir      string
	Accel    string
	Machines []Machine
	// Endpoint, with several masters, is the host's failing-over API
	// endpoint (nil with one master: there is nothing to fail over to).
	Endpoint *Endpoint
}

// Endpoint is the host's API endpoint: Listen on 127.0.0.1, balancing over
// the masters' API server forwards, health-checked with the admin
// certificate.
type Endpoint struct {
	Listen                    string
	Backends                  []string
	CAFile, CertFile, KeyFile string
}

// SwitchDir and MachineDir are where the resources keep their files.
func (c LocalCluster) SwitchDir() string             { return filepath.Join(c.Dir, "network") }
func (c LocalCluster) MachineDir(name string) string { return filepath.Join(c.Dir, "machines", name) }

// Engine runs Pulumi for kubeup.
type Engine struct {
	// DataDir holds kubeup's Pulumi home, the file backend and the
	// passphrase (default <user data dir>/kubeup).
	DataDir string
	// Backend overrides the state backend URL (e.g. s3://bucket/prefix).
	Backend string
	// PulumiRoot is the directory whose bin/pulumi is the CLI.
	PulumiRoot string
	// PluginDir holds pulumi-resource-kubeup (put on the engine's PATH).
	PluginDir string
	// Progress receives the engine's output.
	Progress io.Writer
}

func (e *Engine) backend() string {
	if e.Backend != "" {
		return e.Backend
	}
	return "file://" + filepath.Join(e.DataDir, "state")
}

// passphrase is the secrets provider's passphrase: $PULUMI_CONFIG_PASSPHRASE,
// or one generated once and kept (0600) in the data directory.
func (e *Engine) passphrase() (string, error) {
	if p := os.Getenv("PULUMI_CONFIG_PASSPHRASE"); p != "" {
		return p, nil
	}
	path := filepath.Join(e.DataDir, "passphrase")
	if data, err := os.ReadFile(path); err == nil {
		return strings.TrimSpace(string(data)), nil
	}
	buf := make([]byte, 24)
	if _, err := rand.Read(buf); err != nil {
		return "", err
	}
	p := hex.EncodeToString(buf)
	if err := os.MkdirAll(e.DataDir, 0o700); err != nil {
		return "", err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(p+"\n"), 0o600); err != nil {
		return "", err
	}
	return p, os.Rename(tmp, path)
}

func (e *Engine) workspaceOptions(ctx context.Context) ([]auto.LocalWorkspaceOption, error) {
	if err := os.MkdirAll(filepath.Join(e.DataDir, "state"), 0o700); err != nil {
		return nil, err
	}
	pass, err := e.passphrase()
	if err != nil {
		return nil, fmt.Errorf("secrets passphrase: %w", err)
	}
	if _, err := os.Stat(filepath.Join(e.PulumiRoot, "bin", "pulumi")); err != nil {
		return nil, fmt.Errorf("the Pulumi CLI is not at %s/bin/pulumi: run `make deps` (kubeup artifacts builds it): %w", e.PulumiRoot, err)
	}
	if _, err := os.Stat(filepath.Join(e.PluginDir, "pulumi-resource-"+provider.Name)); err != nil {
		return nil, fmt.Errorf("the kubeup Pulumi provider is not at %s: run `make build`: %w", e.PluginDir, err)
	}
	cmd, err := auto.NewPulumiCommand(&auto.PulumiCommandOptions{Root: e.PulumiRoot, Version: semver.Version{}, SkipVersionCheck: true})
	if err != nil {
		return nil, err
	}
	home := filepath.Join(e.DataDir, "pulumi-home")
	workDir := filepath.Join(e.DataDir, "workspace")
	for _, d := range []string{home, workDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	env := map[string]string{
		"PULUMI_CONFIG_PASSPHRASE":                 pass,
		"PULUMI_SKIP_UPDATE_CHECK":                 "true",
		"PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
		"PULUMI_DIY_BACKEND_NO_LEGACY_WARNING":     "true",
		"PULUMI_BACKEND_URL":                       e.backend(),
		// The engine finds pulumi-resource-kubeup on PATH (an ambient plugin).
		"PATH": e.PluginDir + string(os.PathListSeparator) + filepath.Join(e.PulumiRoot, "bin") + string(os.PathListSeparator) + os.Getenv("PATH"),
	}
	return []auto.LocalWorkspaceOption{
		auto.Pulumi(cmd),
		auto.PulumiHome(home),
		auto.WorkDir(workDir),
		auto.EnvVars(env),
		auto.SecretsProvider("passphrase"),
		auto.Project(workspace.Project{
			Name:    Project,
			Runtime: workspace.NewProjectRuntimeInfo("go", nil),
			Backend: &workspace.ProjectBackend{URL: e.backend()},
		}),
	}, nil
}

func (e *Engine) stack(ctx context.Context, name string, program pulumi.RunFunc) (auto.Stack, error) {
	opts, err := e.workspaceOptions(ctx)
	if err != nil {
		return auto.Stack{}, err
	}
	s, err := auto.UpsertStackInlineSource(ctx, name, Project, program, opts...)
	if err != nil {
		return auto.Stack{}, fmt.Errorf("pulumi stack %s: %w", name, err)
	}
	return s, nil
}

// UpLocal creates or updates a local cluster's switch and VMs; the
// machines named in replace are replaced (deleted, then created anew, with
// a new disk) even if nothing of theirs changed.
func (e *Engine) UpLocal(ctx context.Context, c LocalCluster, replace ...string) error {
	s, err := e.stack(ctx, c.Name, localProgram(c))
	if err != nil {
		return err
	}
	var out bytes.Buffer
	w := e.progress(&out)
	// Refresh first: a VM that died since the last run is recreated.
	opts := []optup.Option{optup.ProgressStreams(w), optup.Refresh(), optup.Parallel(8)}
	if len(replace) > 0 {
		var urns []string
		for _, m := range replace {
			urns = append(urns, MachineURN(c.Name, m))
		}
		opts = append(opts, optup.Replace(urns))
	}
	if _, err := s.Up(ctx, opts...); err != nil {
		return engineError("pulumi up", err, out.String())
	}
	return nil
}

// MachineURN is the URN of a machine's resource in a cluster's stack.
func MachineURN(cluster, machine string) string {
	return fmt.Sprintf("urn:pulumi:%s::%s::%s::%s", cluster, Project, provider.MachineType, machine)
}

// progress is where the engine's output goes: e.Progress and out.
func (e *Engine) progress(out *bytes.Buffer) io.Writer {
	if e.Progress == nil {
		return out
	}
	return io.MultiWriter(e.Progress, out)
}

// engineError makes a failed Pulumi operation's error short: the engine's
// diagnostics (which resource failed, and why) rather than its whole
// output, which the Automation API puts in the error and whose last lines
// are only the resource counts and the duration.
func engineError(op string, err error, output string) error {
	if d := Diagnostics(output); d != "" {
		return fmt.Errorf("%s failed:\n%s", op, d)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Diagnostics returns the "Diagnostics:" section of the engine's output:
// a block per resource with something to say, its header ("type (name):")
// and its messages. Two kinds of message only repeat or distract and are
// left out: the stack's "update failed", and the warning that the kubeup
// plugin was found on PATH (that is how kubeup ships it).
func Diagnostics(output string) string {
	lines := strings.Split(output, "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return l == "Diagnostics:" })
	if start < 0 {
		return ""
	}
	var blocks []string
	var header string
	var msgs []string
	flush := func() {
		if header != "" && len(msgs) > 0 {
			blocks = append(blocks, header+"\n"+strings.Join(msgs, "\n"))
		}
		header, msgs = "", nil
	}
	for _, l := range lines[start+1:] {
		switch {
		case l != "" && !strings.HasPrefix(l, " "):
			flush()
			return strings.Join(blocks, "\n") // the next section: Outputs, Resources
		case strings.HasPrefix(l, "  ") && !strings.HasPrefix(l, "   "):
			flush()
			header = strings.TrimSpace(l)
		case strings.TrimSpace(l) == "":
		default:
			m := strings.TrimSpace(l)
			if noise(m) {
				continue
			}
			msgs = append(msgs, "  "+strings.TrimPrefix(l, "    "))
		}
	}
	flush()
	return strings.Join(blocks, "\n")
}

func noise(msg string) bool {
	switch {
	case msg == "error: update failed", msg == "error: destroy failed", msg == "error: refresh failed":
		return true
	case strings.HasPrefix(msg, "warning: using pulumi-resource-") && strings.Contains(msg, "from $PATH"):
		return true
	}
	return false
}

// ErrNoStack is returned by Destroy when there is nothing to destroy.
var ErrNoStack = errors.New("no such cluster")

// Destroy destroys a local cluster's resources (refreshed first: a VM
// that died is not deleted twice) and removes its stack with its files.
func (e *Engine) Destroy(ctx context.Context, name string) error {
	return e.destroy(ctx, name, true)
}

// removeStackFiles removes what the file backend keeps of a removed stack:
// its <name>.json.bak checkpoint backup, its update history, backups and
// lock directory (wherever the backend's layout puts them: under
// <kind>/<project>/ or <kind>/organization/<project>/). Nothing of a
// destroyed cluster remains (other backends keep their own history).
func (e *Engine) removeStackFiles(name string) error {
	if e.Backend != "" && !strings.HasPrefix(e.Backend, "file://") {
		return nil
	}
	var errs []error
	for _, path := range e.StackFiles(name) {
		if err := os.RemoveAll(path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// StackFiles lists the files the file backend holds for a stack (what
// removeStackFiles removes; empty after Destroy).
func (e *Engine) StackFiles(name string) []string {
	root := filepath.Join(strings.TrimPrefix(e.backend(), "file://"), ".pulumi")
	var out []string
	_ = filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err == nil && path != root {
			base := filepath.Base(path)
			// The stack's own entries sit in a directory named after the
			// project ("kubeup"); another stack may share a name prefix.
			if filepath.Base(filepath.Dir(path)) == Project && (base == name || strings.HasPrefix(base, name+".")) {
				out = append(out, path)
				if d.IsDir() {
					return filepath.SkipDir
				}
			}
		}
		return nil
	})
	return out
}

// resources as the program sees them.
type switchResource struct {
	pulumi.CustomResourceState
	Socket pulumi.StringOutput `pulumi:"socket"`
}

type endpointResource struct {
	pulumi.CustomResourceState
	PID pulumi.IntOutput `pulumi:"pid"`
}

type machineResource struct {
	pulumi.CustomResourceState
	PID pulumi.IntOutput `pulumi:"pid"`
}

// localProgram is the inline Pulumi program of a local cluster.
func localProgram(c LocalCluster) pulumi.RunFunc {
	return func(ctx *pulumi.Context) error {
		var sw switchResource
		if err := ctx.RegisterResource(provider.SwitchType, "network", pulumi.Map{
			"dir": pulumi.String(c.SwitchDir()),
		}, &sw); err != nil {
			return err
		}
		var vms []pulumi.Resource
		for _, m := range c.Machines {
			var fwd pulumi.Array
			for _, f := range m.Forwards {
				fwd = append(fwd, pulumi.Map{"name": pulumi.String(f.Name), "hostPort": pulumi.Int(f.HostPort), "guestPort": pulumi.Int(f.GuestPort)})
			}
			var vm machineResource
			if err := ctx.RegisterResource(provider.MachineType, m.Name, pulumi.Map{
				"name":          pulumi.String(c.Name + "-" + m.Name),
				"role":          pulumi.String(m.Role),
				"dir":           pulumi.String(c.MachineDir(m.Name)),
				"image":         pulumi.String(m.Image),
				"imageSHA256":   pulumi.String(m.ImageSHA),
				"seed":          pulumi.String(m.Seed),
				"seedSHA256":    pulumi.String(m.SeedSHA),
				"cpus":          pulumi.Int(m.CPUs),
				"memoryMiB":     pulumi.Float64(float64(m.MemoryMiB)),
				"diskBytes":     pulumi.Float64(float64(m.DiskBytes)),
				"firmware":      pulumi.String(string(m.Firmware)),
				"accel":         pulumi.String(c.Accel),
				"switch":        sw.Socket,
				"clusterMAC":    pulumi.String(m.ClusterMAC),
				"managementMAC": pulumi.String(m.ManagementMAC),
				"forwards":      fwd,
			}, &vm, pulumi.DependsOn([]pulumi.Resource{&sw})); err != nil {
				return err
			}
			ctx.Export(m.Name+"/pid", vm.PID)
			vms = append(vms, &vm)
		}
		if e := c.Endpoint; e != nil {
			var backends pulumi.StringArray
			for _, b := range e.Backends {
				backends = append(backends, pulumi.String(b))
			}
			var ep endpointResource
			if err := ctx.RegisterResource(provider.EndpointType, "api-endpoint", pulumi.Map{
				"dir": pulumi.String(filepath.Join(c.Dir, "endpoint")), "listen": pulumi.String(e.Listen),
				"backends": backends, "caFile": pulumi.String(e.CAFile), "certFile": pulumi.String(e.CertFile), "keyFile": pulumi.String(e.KeyFile),
			}, &ep, pulumi.DependsOn(vms)); err != nil {
				return err
			}
			ctx.Export("api-endpoint/pid", ep.PID)
		}
		return nil
	}
}
