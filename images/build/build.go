package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/images"
	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/images/disk"
	"kubeup.dev/kubeup/images/preload"
	"kubeup.dev/kubeup/images/rootfs"
	"kubeup.dev/kubeup/provision/render"
)

// SchemaVersion of the manifest and of the role layer key.
const SchemaVersion = 3

// Options for Build.
type Options struct {
	Roles   []components.Role
	Formats []string
	OutDir  string
	// CacheDir is kubeup's cache (artifacts, base layer, work space).
	CacheDir string
	// Artifacts selects where artifacts come from (their own CacheDir and
	// Progress are filled in from here).
	Artifacts artifacts.Options
	// BinDir holds kubeup's own binaries: kubeup-agent goes into the
	// master image and kubeup-agent-node (the same agent built without
	// etcd's client) into the node image, both as /usr/local/bin/kubeup-agent;
	// kubeup-addons into the master image (and the UI's image).
	BinDir string
	// Addons are manifests baked into the master image (for the addon
	// manager), by file name.
	Addons []components.File
	// SourceDateEpoch fixes every timestamp the build writes.
	SourceDateEpoch int64
	Progress        io.Writer
	// Now is the clock for build times (default time.Now).
	Now func() time.Time
}

// Manifest describes one built role image.
type Manifest struct {
	SchemaVersion     int             `json:"schemaVersion"`
	Role              components.Role `json:"role"`
	KubernetesVersion string          `json:"kubernetesVersion"`
	Key               string          `json:"key"`
	// BuiltAt is SOURCE_DATE_EPOCH when set (reproducible), else the clock.
	BuiltAt     time.Time        `json:"builtAt"`
	Files       []OutputFile     `json:"files"`
	RootFSBytes int64            `json:"rootfsBytes"`
	ESPBytes    int64            `json:"espBytes"`
	Packages    []string         `json:"packages"`
	Artifacts   []ArtifactRef    `json:"artifacts"`
	Images      []preload.Image  `json:"preloadedImages"`
	Units       []string         `json:"units"`
	Removed     []rootfs.Removed `json:"removed"`
	// Deduplicated counts the identical files stored once (hard links),
	// such as a binary on the machine that is also in a preloaded image.
	Deduplicated rootfs.Deduplicated `json:"deduplicated"`
	Kernel       string              `json:"kernel"`
	Cmdline      string              `json:"cmdline"`
	Base         string              `json:"baseLayer"`
}

// Timings are a build's step durations, kept out of the manifest so that
// two builds of the same inputs give the same manifest.
type Timings struct {
	Role         components.Role `json:"role"`
	Key          string          `json:"key"`
	Cached       bool            `json:"cached"`
	BuildSeconds float64         `json:"buildSeconds"`
	Steps        []Step          `json:"steps"`
}

// OutputFile is one written image file.
type OutputFile struct {
	Format string `json:"format"`
	Name   string `json:"name"`
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// ArtifactRef is an artifact as it went into the image.
type ArtifactRef struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	Source  string `json:"source"`
	Key     string `json:"key"`
	Main    string `json:"main,omitempty"`
	SHA256  string `json:"sha256,omitempty"`
	Size    int64  `json:"size"`
}

// Step is one timed build step.
type Step struct {
	Name    string  `json:"name"`
	Seconds float64 `json:"seconds"`
}

// ImageName is the base name of a role's image files.
func ImageName(role components.Role, k8sVersion string) string {
	return fmt.Sprintf("kubeup-%s-%s", role, k8sVersion)
}

// ManifestPath is where a role's manifest is written.
func ManifestPath(outDir string, role components.Role, k8sVersion string) string {
	return filepath.Join(outDir, ImageName(role, k8sVersion)+".json")
}

// TimingsPath is where a role's build timings are written.
func TimingsPath(outDir string, role components.Role, k8sVersion string) string {
	return filepath.Join(outDir, ImageName(role, k8sVersion)+".timings.json")
}

// ErrMissingTool wraps a missing host tool; the message names the package.
var ErrMissingTool = errors.New("missing host tool")

// hostTools maps each tool to the Debian package that has it.
var hostTools = map[string]string{
	"mmdebstrap": "mmdebstrap", "tar": "tar", "mkfs.ext4": "e2fsprogs", "mkfs.vfat": "dosfstools",
	"mmd": "mtools", "mcopy": "mtools", "syslinux": "syslinux", "sgdisk": "gdisk",
	"qemu-img": "qemu-utils", "systemd-analyze": "systemd", "chroot": "coreutils",
}

// CheckHost verifies the build can run here: root, tools, boot loader files.
func CheckHost() error {
	if os.Geteuid() != 0 {
		return errors.New("kubeup build must run as root (mmdebstrap installs packages into a chroot, containerd unpacks image layers)")
	}
	var missing []string
	for _, tool := range slices.Sorted(maps.Keys(hostTools)) {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", tool, hostTools[tool]))
		}
	}
	for file, pkg := range map[string]string{disk.SystemdBootEFI: "systemd-boot-efi", disk.GPTMBR: "syslinux-common"} {
		if _, err := os.Stat(file); err != nil {
			missing = append(missing, fmt.Sprintf("%s (Debian package %s)", file, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s; run `make deps` or apt-get install them", ErrMissingTool, strings.Join(missing, ", "))
	}
	return nil
}

// ParseRoles turns "master", "node" or "all" into roles.
func ParseRoles(s string) ([]components.Role, error) {
	switch s {
	case "all", "":
		return components.Roles(), nil
	case string(components.Master):
		return []components.Role{components.Master}, nil
	case string(components.Node):
		return []components.Role{components.Node}, nil
	}
	return nil, fmt.Errorf("unknown role %q (use master, node or all)", s)
}

// ParseFormats checks a comma-separated format list.
func ParseFormats(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if !slices.Contains(disk.Formats(), f) {
			return nil, fmt.Errorf("unknown image format %q (use raw, qcow2, gce)", f)
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no image format given (use raw, qcow2, gce)")
	}
	return out, nil
}

// Minimum free space a role build needs in the cache and output directories.
const needFreeBytes = 4 << 30

func checkFree(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("check free space in %s: %w", dir, err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < needFreeBytes {
		return fmt.Errorf("only %d MiB free in %s; a build needs %d MiB: free some space or point --out/--cache-dir elsewhere", free>>20, dir, needFreeBytes>>20)
	}
	return nil
}

// Build builds every requested role and returns their manifests and timings.
func Build(ctx context.Context, o Options) ([]*Manifest, []*Timings, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if err := CheckHost(); err != nil {
		return nil, nil, err
	}
	agents := map[components.Role][]byte{}
	for _, role := range o.Roles {
		name := agentBinaryName(role)
		b, err := os.ReadFile(filepath.Join(o.BinDir, name))
		if err != nil {
			return nil, nil, fmt.Errorf("read the %s binary (make build writes bin/%s; or pass --bin-dir): %w", name, name, err)
		}
		agents[role] = b
	}
	probeBin, err := os.ReadFile(filepath.Join(o.BinDir, "kubeup-probe"))
	if err != nil {
		return nil, nil, fmt.Errorf("read the kubeup-probe binary (make build writes bin/kubeup-probe; or pass --bin-dir): %w", err)
	}
	addonsBin, err := os.ReadFile(filepath.Join(o.BinDir, "kubeup-addons"))
	if err != nil {
		return nil, nil, fmt.Errorf("read the kubeup-addons binary (make build writes bin/kubeup-addons; or pass --bin-dir): %w", err)
	}
	for _, d := range []string{o.OutDir, o.CacheDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, nil, err
		}
		if err := checkFree(d); err != nil {
			return nil, nil, err
		}
	}
	ao := o.Artifacts
	ao.CacheDir, ao.Progress, ao.SourceDateEpoch = o.CacheDir, o.Progress, o.SourceDateEpoch
	set, err := artifacts.Ensure(ctx, ao)
	if err != nil {
		return nil, nil, fmt.Errorf("artifacts: %w", err)
	}
	base, err := rootfs.EnsureBase(ctx, rootfs.BaseOptions{CacheDir: o.CacheDir, SourceDateEpoch: o.SourceDateEpoch, Progress: o.Progress})
	if err != nil {
		return nil, nil, err
	}
	roles, err := render.Roles()
	if err != nil {
		return nil, nil, err
	}
	var ms []*Manifest
	var ts []*Timings
	for _, role := range o.Roles {
		in := roleInputs{role: role, base: base, set: set, agent: agents[role], probe: probeBin, files: roles[role], formats: o.Formats}
		if role == components.Master {
			in.addons, in.addonsBin = o.Addons, addonsBin
		}
		m, t, err := buildRole(ctx, o, in)
		if err != nil {
			return nil, nil, fmt.Errorf("build %s image: %w", role, err)
		}
		ms, ts = append(ms, m), append(ts, t)
	}
	return ms, ts, nil
}

type roleInputs struct {
	role      components.Role
	base      *rootfs.Base
	set       *artifacts.Set
	agent     []byte
	probe     []byte
	addonsBin []byte // masters only
	files     render.Role
	addons    []components.File
	formats   []string
}

// key hashes everything that goes into a role's image.
func (in roleInputs) key(epoch int64) string {
	h := sha256.New()
	fmt.Fprintf(h, "kubeup-role-v%d\n%s\n%s\n%d\n", SchemaVersion, in.role, in.base.Key, epoch)
	for _, a := range in.set.Artifacts {
		fmt.Fprintf(h, "artifact %s %s %s\n", a.Kind, a.Name, a.Key)
	}
	fmt.Fprintf(h, "agent %x\nprobe %x\naddons %x\n", sha256.Sum256(in.agent), sha256.Sum256(in.probe), sha256.Sum256(in.addonsBin))
	for _, a := range in.preloads() {
		fmt.Fprintf(h, "preload %s\n", a.Name)
	}
	for _, u := range in.files.Units {
		data, _ := u.Bytes()
		fmt.Fprintf(h, "unit %s %x\n", u.Name, sha256.Sum256(data))
	}
	for _, f := range append(slices.Clone(in.files.Files), in.addonFiles()...) {
		fmt.Fprintf(h, "file %s %o %x\n", f.Path, f.Mode, sha256.Sum256(f.Content))
	}
	fmt.Fprintf(h, "cmdline %s\nrecipe %s\ndisk %d\ndedupe %v %v\n", cmdline, rootfs.RecipeHash(), disk.LayoutVersion, dedupeDirs, dedupeKeep)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// dedupeDirs hold the read-only files worth deduplicating: binaries on the
// machine and the unpacked snapshots of the preloaded images.
var dedupeDirs = []string{"usr", "var/lib/containerd"}

// dedupeKeep are copies kept on purpose: the API load balancer's copy of
// the agent (see components.APILBBinary); linked, the two processes would
// share the file's pages again.
var dedupeKeep = []string{strings.TrimPrefix(components.APILBBinary, "/")}

// cmdline: the serial console first for logs, the VGA console for people.
// Transparent huge pages only where a program asks (madvise): Debian's
// default, "always", backs any touched 2 MiB-aligned anonymous region of
// every small daemon with a whole huge page (measured on the agent: two
// huge pages, 4 MiB of its 10 MiB anonymous memory, for a few kB used).
// tsc=reliable: under QEMU's TCG the guest's TSC is the host's (invariant
// on any x86 host of the last decade), but the kernel's boot-time check
// between vCPUs sees it warp and falls back to the HPET. Every clock read
// then leaves the vDSO for a syscall and an emulated MMIO read, and every
// Go daemon reads the clock constantly. (Measured after the change: a
// loaded TCG master's kernel share stayed at 41-51%, so the clock reads
// were not the bulk of it.) On KVM and the clouds kvm-clock still outranks
// the TSC.
const cmdline = "console=tty0 console=ttyS0,115200n8 panic=10 systemd.show_status=auto transparent_hugepage=madvise tsc=reliable"

// upToDate returns the existing manifest when every requested format of the
// role was built from the same inputs and is still there unchanged in size.
func upToDate(path, key string, formats []string, outDir string) *Manifest {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var m Manifest
	if json.Unmarshal(data, &m) != nil || m.Key != key || m.SchemaVersion != SchemaVersion {
		return nil
	}
	for _, f := range formats {
		i := slices.IndexFunc(m.Files, func(of OutputFile) bool { return of.Format == f })
		if i < 0 {
			return nil
		}
		fi, err := os.Stat(filepath.Join(outDir, m.Files[i].Name))
		if err != nil || fi.Size() != m.Files[i].Size {
			return nil
		}
	}
	return &m
}

func buildRole(ctx context.Context, o Options, in roleInputs) (*Manifest, *Timings, error) {
	m, t, err := buildRoleImage(ctx, o, in)
	if err != nil {
		return nil, nil, err
	}
	k8s, _ := images.Pinned().Component("kubernetes")
	if err := writeJSON(TimingsPath(o.OutDir, in.role, k8s.Version), t); err != nil {
		return nil, nil, err
	}
	return m, t, nil
}

// buildRoleImage builds one role's image by the steps of roleSteps, unless
// an image of the same inputs is already there.
func buildRoleImage(ctx context.Context, o Options, in roleInputs) (*Manifest, *Timings, error) {
	start := o.Now()
	kc, _ := images.Pinned().Component("kubernetes")
	key := in.key(o.SourceDateEpoch)
	timings := &Timings{Role: in.role, Key: key}
	manifestPath := ManifestPath(o.OutDir, in.role, kc.Version)
	if m := upToDate(manifestPath, key, in.formats, o.OutDir); m != nil {
		fmt.Fprintf(o.Progress, "==> %s image: up to date (key %s)\n", in.role, key)
		timings.Cached = true
		timings.BuildSeconds = o.Now().Sub(start).Seconds()
		return m, timings, nil
	}
	b := &roleBuild{o: o, in: in, start: start, name: ImageName(in.role, kc.Version),
		m: &Manifest{SchemaVersion: SchemaVersion, Role: in.role, KubernetesVersion: kc.Version, Key: key,
			Base: in.base.Key, Cmdline: disk.KernelCmdline(cmdline), BuiltAt: start.UTC().Truncate(time.Second)}}
	if o.SourceDateEpoch > 0 {
		b.m.BuiltAt = time.Unix(o.SourceDateEpoch, 0).UTC()
	}
	work, err := os.MkdirTemp(o.CacheDir, ".build-"+string(in.role)+"-")
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(work)
	b.work, b.root, b.raw = work, filepath.Join(work, "root"), filepath.Join(work, "disk.raw")
	for _, s := range roleSteps(b.name, in.formats) {
		if err := b.run(ctx, s, timings); err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.name, err)
		}
	}
	timings.BuildSeconds = o.Now().Sub(start).Seconds()
	return b.m, timings, writeJSON(manifestPath, b.m)
}

// roleSteps is the build of a role image, in order: a root file system
// from the base layer, made into the role's appliance, then a disk and
// one file per requested format.
func roleSteps(name string, formats []string) []buildStep {
	steps := []buildStep{
		{"unpack base layer", (*roleBuild).unpackBase},
		{"trim", (*roleBuild).trim},
		{"install artifacts, agent and units", (*roleBuild).install},
		{"preload container images", (*roleBuild).preload},
		{"deduplicate identical files", (*roleBuild).dedupe},
		{"verify units (systemd-analyze verify --root)", (*roleBuild).verifyUnits},
		{"record packages and clamp timestamps", (*roleBuild).seal},
		{"assemble disk (ext4 root, EFI partition, GPT)", (*roleBuild).assemble},
	}
	for _, f := range formats {
		file := name + "." + disk.Ext(f)
		steps = append(steps, buildStep{"write " + file, func(b *roleBuild, ctx context.Context) error {
			return b.writeFormat(ctx, f, file)
		}})
	}
	return steps
}

// buildStep is one named, timed step of a role image's build.
type buildStep struct {
	name string
	run  func(b *roleBuild, ctx context.Context) error
}

// roleBuild is what the steps of one role image's build share.
type roleBuild struct {
	o     Options
	in    roleInputs
	m     *Manifest
	name  string // the image files' base name
	start time.Time
	// work is the build's scratch directory; root the image's root file
	// system in it, raw the assembled disk.
	work, root, raw string
	// kernel and initrd, moved out of root/boot by unpackBase.
	kernel, initrd string
}

// run runs a step with a progress line before and after and records its
// duration.
func (b *roleBuild) run(ctx context.Context, s buildStep, t *Timings) error {
	start := time.Now()
	fmt.Fprintf(b.o.Progress, "==> %s image: %s\n", b.in.role, s.name)
	err := s.run(b, ctx)
	d := time.Since(start)
	t.Steps = append(t.Steps, Step{Name: s.name, Seconds: d.Seconds()})
	if err == nil {
		fmt.Fprintf(b.o.Progress, "    %s image: %s done in %s\n", b.in.role, s.name, d.Round(100*time.Millisecond))
	}
	return err
}

func (b *roleBuild) unpackBase(ctx context.Context) error {
	fmt.Fprintf(b.o.Progress, "    %s image: base layer %s\n", b.in.role, b.in.base.Key)
	if err := rootfs.Unpack(ctx, b.in.base, b.root); err != nil {
		return err
	}
	k, i, err := rootfs.Kernel(b.root)
	if err != nil {
		return err
	}
	b.kernel, b.initrd = filepath.Join(b.work, "vmlinuz"), filepath.Join(b.work, "initrd.img")
	b.m.Kernel = strings.TrimPrefix(filepath.Base(k), "vmlinuz-")
	if err := os.Rename(k, b.kernel); err != nil {
		return err
	}
	return os.Rename(i, b.initrd)
}

func (b *roleBuild) trim(context.Context) error {
	removed, err := rootfs.Trim(b.root)
	b.m.Removed = removed
	return err
}

func (b *roleBuild) install(context.Context) error { return install(b.root, b.in, b.m) }

func (b *roleBuild) preload(ctx context.Context) error {
	return preloadImages(ctx, b.root, b.work, b.in, b.o.SourceDateEpoch, b.m)
}

func (b *roleBuild) dedupe(context.Context) error {
	saved, err := rootfs.Dedupe(b.root, dedupeDirs, rootfs.DedupeMinSize, dedupeKeep...)
	b.m.Deduplicated = saved
	if err == nil && saved.Files > 0 {
		fmt.Fprintf(b.o.Progress, "    %s image: %d files stored once, %.1f MiB saved\n", b.in.role, saved.Files, float64(saved.Bytes)/(1<<20))
	}
	return err
}

func (b *roleBuild) verifyUnits(ctx context.Context) error {
	return VerifyUnits(ctx, b.root, b.m.Units)
}

// seal records the installed packages and the image's description inside
// it, then clamps every timestamp (last: directory mtimes change as files go
// in) to SOURCE_DATE_EPOCH, or to when the build started.
func (b *roleBuild) seal(context.Context) error {
	pkgs, err := os.ReadFile(filepath.Join(b.root, "var/lib/dpkg/status"))
	if err != nil {
		return err
	}
	b.m.Packages = rootfs.SortedPackages(rootfs.ParseDpkgStatus(pkgs))
	if err := writeImageInfo(b.root, b.m); err != nil {
		return err
	}
	epoch := b.o.SourceDateEpoch
	if epoch == 0 {
		epoch = b.start.Unix()
	}
	return rootfs.ClampTimes(b.root, epoch)
}

func (b *roleBuild) assemble(ctx context.Context) error {
	res, err := disk.Build(ctx, b.raw, disk.Options{Root: b.root, Boot: disk.Boot{Kernel: b.kernel, Initrd: b.initrd, Cmdline: cmdline},
		SourceDateEpoch: b.o.SourceDateEpoch, WorkDir: b.work})
	if err != nil {
		return err
	}
	b.m.RootFSBytes, b.m.ESPBytes = res.RootSize, res.ESPSize
	return os.RemoveAll(b.root)
}

// writeFormat converts the raw disk to format f as file in the output
// directory, through a temporary file.
func (b *roleBuild) writeFormat(ctx context.Context, f, file string) error {
	tmp := filepath.Join(b.o.OutDir, "."+file+".tmp")
	defer os.Remove(tmp)
	if err := disk.Convert(ctx, b.raw, f, tmp, b.o.SourceDateEpoch); err != nil {
		return err
	}
	sum, size, err := fileSHA256(tmp)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(b.o.OutDir, file)); err != nil {
		return err
	}
	b.m.Files = append(b.m.Files, OutputFile{Format: f, Name: file, SHA256: sum, Size: size})
	return nil
}

// writeJSON writes v to path through a temporary file.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// artifactRoles are the artifacts only one role needs (the rest go into
// both images: masters run a kubelet, kube-proxy and containerd too).
var artifactRoles = map[string]components.Role{"etcd": components.Master}

// imageRoles are the container images only one role preloads. None today:
// the addons with data (Prometheus, VictoriaLogs, the OpenTelemetry
// Collector) run on the cluster's addon machine, the first node (or the
// first master without nodes), so both roles carry them (the node image
// grows by their 44 MB of layers). The UI's image is built from the
// master's kubeup-addons binary (addonsBin) and stays on masters.
var imageRoles = map[string]components.Role{}

// preloads are the image artifacts a role's image preloads.
func (in roleInputs) preloads() []*artifacts.Artifact {
	var out []*artifacts.Artifact
	for _, a := range in.set.Artifacts {
		if a.Kind != artifacts.KindImage {
			continue
		}
		if r, ok := imageRoles[a.Name]; ok && r != in.role {
			continue
		}
		out = append(out, a)
	}
	return out
}

// agentBinaryName is the file in BinDir holding the agent a role's image
// carries. Nodes get the build with -tags noetcd: without etcd's client
// (gRPC, protobuf, zap) it is 3 MB smaller, and every page of it a node
// would never run is a page less of the agent's resident memory.
func agentBinaryName(r components.Role) string {
	if r == components.Node {
		return "kubeup-agent-node"
	}
	return "kubeup-agent"
}

// install copies the artifacts, the agent, the role's units and files into
// the root and configures it as the role's appliance.
func install(root string, in roleInputs, m *Manifest) error {
	for _, a := range in.set.Artifacts {
		if a.Kind != artifacts.KindComponent || a.Use != images.UseRootfs {
			continue
		}
		if r, ok := artifactRoles[a.Name]; ok && r != in.role {
			continue
		}
		if err := rootfs.CopyTree(a.Root(), root); err != nil {
			return fmt.Errorf("install %s: %w", a.Name, err)
		}
		main := a.MainFile()
		m.Artifacts = append(m.Artifacts, ArtifactRef{Name: a.Name, Version: a.Version, Source: string(a.Source),
			Key: a.Key, Main: main.Path, SHA256: main.SHA256, Size: a.TotalSize()})
	}
	files := slices.Clone(in.files.Files)
	own := func(name, path string, content []byte) {
		sum := sha256.Sum256(content)
		m.Artifacts = append(m.Artifacts, ArtifactRef{Name: name, Version: "built from this checkout", Source: "build",
			Main: strings.TrimPrefix(path, "/"), SHA256: hex.EncodeToString(sum[:]), Size: int64(len(content))})
		files = append(files, components.File{Path: path, Mode: 0o755, Content: content})
	}
	own(agentBinaryName(in.role), components.AgentBinary, in.agent)
	own("kubeup-apilb", components.APILBBinary, in.agent) // a copy: see APILBBinary
	own("kubeup-probe", components.ProbeBinary, in.probe)
	if in.addonsBin != nil {
		own("kubeup-addons", components.AddonsBinary, in.addonsBin)
	}
	files = append(files, in.addonFiles()...)
	for _, u := range in.files.Units {
		m.Units = append(m.Units, u.Name)
	}
	return rootfs.Configure(root, rootfs.Appliance{Role: in.role, Units: in.files.Units,
		Target: components.RoleTarget(in.role), Files: files})
}

// addonFiles are the files of ImageAddonDir (masters only): the addons
// baked in and a README. The addon manager reads ImageAddonDir on every
// master and, when a manifest directory is missing, refuses to prune (a
// vanished directory must not delete its objects), so the directory is
// always there, with a note of what belongs in it.
func (in roleInputs) addonFiles() []components.File {
	if in.addonsBin == nil {
		return nil
	}
	out := []components.File{{Path: components.ImageAddonDir + "/README", Mode: 0o644, Content: []byte(imageAddonReadme)}}
	for _, f := range in.addons {
		out = append(out, components.File{Path: components.ImageAddonDir + "/" + filepath.Base(f.Path), Mode: 0o644, Content: f.Content})
	}
	return out
}

// imageAddonReadme is ImageAddonDir's README in every master image (a
// variable for the key's test).
var imageAddonReadme = `Addon manifests baked into this master image (kubeup build).

kubeup-addon-manager applies every *.yaml, *.yml and *.json file here and
in ` + components.ClusterAddonDir + ` (written at first boot) beside the
cluster's own addons, ordered by kind (namespaces and CRDs first). Each object
must carry the label
` + components.AddonModeLabel + `: Reconcile (kept exactly as declared; deleted
when its manifest goes) or EnsureExists (created when missing, never
overwritten).
`

func preloadImages(ctx context.Context, root, work string, in roleInputs, epoch int64, m *Manifest) error {
	ctrd := filepath.Join(root, "usr/local/bin/containerd")
	if _, err := os.Stat(ctrd); err != nil {
		return fmt.Errorf("containerd is not in the image: %w", err)
	}
	var tarballs []string
	for _, a := range in.preloads() {
		tarballs = append(tarballs, a.TarballPath())
	}
	sort.Strings(tarballs)
	if in.addonsBin != nil {
		// The UI addon runs kubeup-addons from an image of this very binary.
		out := filepath.Join(work, "kubeup-addons-image.tar")
		if _, err := artifacts.BinaryImage(ctx, images.AddonsImageRef(in.addonsBin), "kubeup-addons", in.addonsBin,
			strings.TrimPrefix(components.AddonsBinary, "/"), "65532", epoch, out); err != nil {
			return fmt.Errorf("kubeup-addons image: %w", err)
		}
		tarballs = append(tarballs, out)
	}
	imgs, err := preload.Run(ctx, preload.Options{Containerd: ctrd, Root: root, Tarballs: tarballs, WorkDir: filepath.Join(work, "preload")})
	if err != nil {
		return err
	}
	m.Images = imgs
	return nil
}

// VerifyUnits runs systemd-analyze verify on units inside an image root;
// any complaint (unknown key, missing binary) is an error.
func VerifyUnits(ctx context.Context, root string, units []string) error {
	args := append([]string{"verify", "--root=" + root}, units...)
	cmd := exec.CommandContext(ctx, "systemd-analyze", args...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		return fmt.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	return nil
}

// writeImageInfo leaves a description of the image inside it.
func writeImageInfo(root string, m *Manifest) error {
	info := map[string]any{"role": m.Role, "kubernetesVersion": m.KubernetesVersion, "key": m.Key,
		"artifacts": m.Artifacts, "preloadedImages": m.Images, "kernel": m.Kernel}
	data, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return err
	}
	p := filepath.Join(root, "etc/kubeup/image.json")
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return os.WriteFile(p, append(data, '\n'), 0o644)
}

func fileSHA256(path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", 0, err
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}
