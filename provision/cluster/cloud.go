package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/cloudinit"
	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/images"
	"kubeup.dev/kubeup/images/build"
	"kubeup.dev/kubeup/images/disk"
	"kubeup.dev/kubeup/infra"
	"kubeup.dev/kubeup/infra/cloud"
	"kubeup.dev/kubeup/infra/cloud/leftovers"
	"kubeup.dev/kubeup/infra/cloud/quota"
	"kubeup.dev/kubeup/provision/config"
)

// cloudTarget is what differs between the clouds; the steps are the same.
type cloudTarget interface {
	// provider is cloud.AWS or cloud.GCP; plugin the Pulumi plugin.
	provider() string
	plugin() infra.Plugin
	// location is the state's region, zone and project.
	location() CloudState
	// stackConfig configures the provider of every stack (region, project).
	stackConfig() infra.StackConfig
	// imageFormat is the disk format uploaded (raw; gce's tar.gz).
	imageFormat() string
	// policy prepares user-data for the cloud's metadata service.
	policy() cloudinit.Policy
	// masterLocalAddresses are what the masters must accept as their own
	// for the load balancer at endpoint.
	masterLocalAddresses(endpoint string) []string
	// imageProgram publishes one image (adopting one published before
	// under the same digest when mayAdopt).
	imageProgram(img cloud.Image, mayAdopt bool) pulumi.RunFunc
	// program is the cluster stack.
	program(c cloud.Cluster) pulumi.RunFunc
	// credentials fails, saying what to do, when there are none.
	credentials(ctx context.Context) error
	// lister lists what is left of a cluster.
	lister(ctx context.Context) (leftovers.Lister, error)
	// quota checks the account's vCPU quotas.
	quota(ctx context.Context) (quota.Checker, error)
	// consoleHint says how to read a machine's serial console.
	consoleHint(cluster, machine string) string
}

func targetFor(c *config.Cluster) (cloudTarget, error) {
	switch t := c.Spec.Target; {
	case t.Provider == config.ProviderAWS && t.AWS != nil:
		return awsTarget{region: t.AWS.Region, zone: t.AWS.AWSZone()}, nil
	case t.Provider == config.ProviderGCP && t.GCP != nil:
		return gcpTarget{project: t.GCP.Project, region: t.GCP.Region(), zone: t.GCP.Zone}, nil
	}
	return nil, fmt.Errorf("spec.target.provider %q is not a cloud", c.Spec.Target.Provider)
}

// targetOf is a cloud cluster's target from its state (down has no config).
func targetOf(st *State) (cloudTarget, error) {
	if st.Cloud == nil {
		return nil, fmt.Errorf("cluster %s: its state names no cloud location", st.Name)
	}
	switch st.Provider {
	case config.ProviderAWS:
		return awsTarget{region: st.Cloud.Region, zone: st.Cloud.Zone}, nil
	case config.ProviderGCP:
		return gcpTarget{project: st.Cloud.Project, region: st.Cloud.Region, zone: st.Cloud.Zone}, nil
	}
	return nil, fmt.Errorf("cluster %s: provider %q is not a cloud", st.Name, st.Provider)
}

// cloudSteps is the bring-up of a cloud cluster. The API load balancer
// comes first: its address is in the API server's certificate and in every
// machine's configuration, which are rendered once it exists.
func cloudSteps() []step {
	return []step{
		{name: "cloud credentials", run: checkCredentials},
		{name: "vCPU quota", run: checkQuota},
		{name: "images ready", run: ensureImages},
		{name: "cluster state", run: prepareCloudState},
		{name: "provider plugin", run: ensurePlugin},
		{name: "images published", run: publishImages},
		{name: "network and API load balancer", run: deployNetwork},
		{name: "cluster PKI", run: loadPKI},
		{name: "rendered machine configs", run: renderMachines},
		{name: "machines started", run: deployMachines},
		{name: "API server healthy", run: waitAPIServer, wait: true},
		{name: "all nodes Ready", run: waitNodes, wait: true},
		{name: "kube-system pods Ready", run: waitSystemPods, wait: true},
	}
}

// cloudBringUp is the cloud steps' part of a bring-up.
type cloudBringUp struct {
	target   cloudTarget
	images   map[string]cloud.Image // by role, with their published ids
	endpoint string                 // the API load balancer's host name or address
}

func prepareCloudState(_ context.Context, u *bringUp) (string, error) {
	t, err := targetFor(u.cfg)
	if err != nil {
		return "", err
	}
	st, err := LoadState(u.opts.DataDir, u.cfg.Metadata.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		st = &State{Name: u.cfg.Metadata.Name, Provider: u.cfg.Spec.Target.Provider, Created: time.Now().UTC()}
	case err != nil:
		return "", err
	case st.Provider != u.cfg.Spec.Target.Provider:
		return "", fmt.Errorf("cluster %s exists on %s, not %s: kubeup down --name %s first", st.Name, st.Provider, u.cfg.Spec.Target.Provider, st.Name)
	}
	loc := t.location()
	if st.Cloud != nil && (st.Cloud.Region != loc.Region || st.Cloud.Project != loc.Project) {
		return "", fmt.Errorf("cluster %s exists in %s%s: moving it is not supported; kubeup down --name %s first", st.Name, st.Cloud.Project, st.Cloud.Region, st.Name)
	}
	if st.Cloud != nil {
		loc.ImageStacks = st.Cloud.ImageStacks
	}
	st.Cloud = &loc
	st.Machines = nil
	for _, m := range u.cfg.Machines() {
		st.Machines = append(st.Machines, MachineState{Name: m.Name, Role: m.Role, IP: m.IP.String()})
	}
	u.state, u.cloud = st, &cloudBringUp{target: t}
	return t.provider() + " " + loc.Project + loc.Zone, st.save(u.dir)
}

// checkCredentials comes first: without credentials nothing is built,
// written or created.
func checkCredentials(ctx context.Context, u *bringUp) (string, error) {
	t, err := targetFor(u.cfg)
	if err != nil {
		return "", err
	}
	return "", t.credentials(ctx)
}

// checkQuota fails before anything is created when the account cannot run
// the cluster's vCPUs, or its quota cannot be read (--skip-quota-check).
func checkQuota(ctx context.Context, u *bringUp) (string, error) {
	if u.opts.SkipQuotaCheck {
		return "skipped", nil
	}
	t, err := targetFor(u.cfg)
	if err != nil {
		return "", err
	}
	c, err := plannedCluster(u.cfg, t)
	if err != nil {
		return "", err
	}
	q, err := t.quota(ctx)
	if err != nil {
		return "", err
	}
	needs, err := quota.Needs(c)
	if err != nil {
		return "", err
	}
	vcpus := 0
	for _, n := range needs {
		vcpus += n.VCPUs
	}
	return fmt.Sprintf("%d vCPUs fit", vcpus), q.Check(ctx, c)
}

func ensurePlugin(ctx context.Context, u *bringUp) (string, error) {
	p := u.cloud.target.plugin()
	return p.Name + " " + p.Version, engine(u.opts, io.Discard).EnsurePlugins(ctx, p)
}

// imageStack is the stack that publishes one image: one per provider,
// location, role and digest, so that a published image outlives clusters,
// is reused by every cluster booting the same image, and is removed only
// by down --purge-images.
func imageStack(t cloudTarget, img cloud.Image) string {
	loc := t.location()
	where := loc.Region
	if loc.Project != "" {
		where = loc.Project + "-" + loc.Region
	}
	return fmt.Sprintf("images-%s-%s-%s-%s", t.provider(), where, img.Role, img.ShortDigest())
}

// ImageStackPrefix is the prefix of a location's image stacks.
func imageStackPrefix(t cloudTarget) string {
	return strings.TrimSuffix(imageStack(t, cloud.Image{}), "-")
}

// cloudImages describes the images ensureImages left (the manifest's
// digest names each).
func cloudImages(u *bringUp) (map[string]cloud.Image, error) {
	out := map[string]cloud.Image{}
	uefi := map[string]bool{}
	for _, m := range u.cfg.Machines() {
		uefi[string(m.Role)] = m.Firmware != "bios"
	}
	for role, path := range u.images {
		manifest := strings.TrimSuffix(path, "."+disk.Ext(u.imageFormat)) + ".json"
		sum, err := fileDigest(manifest)
		if err != nil {
			return nil, fmt.Errorf("the %s image's manifest: %w", role, err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("the %s image: %w", role, err)
		}
		out[string(role)] = cloud.Image{Role: string(role), Path: path, SHA256: sum, SizeBytes: fi.Size(), UEFI: uefi[string(role)]}
	}
	return out, nil
}

// publishImages publishes each role's image once per digest: an image
// stack that already has its output is reused without running the engine.
func publishImages(ctx context.Context, u *bringUp) (string, error) {
	imgs, err := cloudImages(u)
	if err != nil {
		return "", err
	}
	eng := engine(u.opts, u.pulumiLog())
	t := u.cloud.target
	var done []string
	for _, role := range []string{cloud.RoleMaster, cloud.RoleNode} {
		img := imgs[role]
		name := imageStack(t, img)
		outs, err := eng.Outputs(ctx, name)
		switch {
		case err == nil:
			done = append(done, role+" reused")
		case errors.Is(err, infra.ErrNoStack):
			if outs, err = eng.Up(ctx, name, t.imageProgram(img, true), t.stackConfig()); err != nil {
				return "", err
			}
			done = append(done, role+" published")
		default:
			return "", err
		}
		if img.ID, err = infra.StringOutput(outs, "image/"+role); err != nil {
			// A stack whose first up failed: run it again, never adopting
			// (what it made itself would look published).
			if outs, err = eng.Up(ctx, name, t.imageProgram(img, false), t.stackConfig()); err != nil {
				return "", err
			}
			if img.ID, err = infra.StringOutput(outs, "image/"+role); err != nil {
				return "", fmt.Errorf("stack %s: %w", name, err)
			}
		}
		imgs[role] = img
		if !slices.Contains(u.state.Cloud.ImageStacks, name) {
			u.state.Cloud.ImageStacks = append(u.state.Cloud.ImageStacks, name)
		}
	}
	u.cloud.images = imgs
	return strings.Join(done, ", "), u.state.save(u.dir)
}

// cloudCluster is the programs' input; with machines false only what the
// machines' configuration depends on.
func cloudCluster(u *bringUp, machines bool) (cloud.Cluster, error) {
	ct := u.cfg.CloudTarget()
	loc := u.state.Cloud
	c := cloud.Cluster{
		Name: u.cfg.Metadata.Name, Provider: u.cloud.target.provider(),
		Region: loc.Region, Zone: loc.Zone, Project: loc.Project,
		Network: cloud.Network{
			MachineCIDR: u.cfg.Spec.Network.MachineCIDR, PodCIDR: u.cfg.Spec.Network.PodCIDR,
			VPC: ct.VPC, Subnet: ct.Subnet,
		},
		APIAllowedCIDRs: ct.AllowedCIDRs, SSHAllowedCIDRs: ct.SSHCIDRs,
		Images: u.cloud.images, Tags: ct.Tags,
	}
	if !machines {
		return c, nil
	}
	for _, m := range u.render.Machines {
		c.Machines = append(c.Machines, cloud.Machine{
			Name: m.Name, Role: string(m.Role), Type: u.cfg.MachineType(m.Role), IP: m.IP.String(),
			DiskGiB: int((m.DiskBytes + 1<<30 - 1) >> 30), UserData: m.UserData,
			PodCIDR: u.render.Cluster.PodCIDRs[m.Name],
		})
	}
	return c, c.Validate()
}

// deployNetwork creates the network, the firewall and the API load
// balancer, whose address the PKI and the render need.
func deployNetwork(ctx context.Context, u *bringUp) (string, error) {
	c, err := cloudCluster(u, false)
	if err != nil {
		return "", err
	}
	t := u.cloud.target
	outs, err := engine(u.opts, u.pulumiLog()).Up(ctx, u.cfg.Metadata.Name, t.program(c), t.stackConfig())
	if err != nil {
		return "", err
	}
	if u.cloud.endpoint, err = infra.StringOutput(outs, "apiEndpoint"); err != nil {
		return "", err
	}
	u.state.APIEndpoint = (&url.URL{Scheme: "https", Host: fmt.Sprintf("%s:%d", u.cloud.endpoint, components.APIServerPort)}).String()
	return u.cloud.endpoint, u.state.save(u.dir)
}

// deployMachines adds the machines to the cluster stack.
func deployMachines(ctx context.Context, u *bringUp) (string, error) {
	c, err := cloudCluster(u, true)
	if err != nil {
		return "", err
	}
	t := u.cloud.target
	if _, err := engine(u.opts, u.pulumiLog()).Up(ctx, u.cfg.Metadata.Name, t.program(c), t.stackConfig()); err != nil {
		return "", err
	}
	return fmt.Sprintf("%d machines", len(c.Machines)), nil
}

// pulumiLog is where the engine's output goes: pulumi.log in the cluster
// directory (appended: a cloud up runs several stacks).
func (u *bringUp) pulumiLog() io.Writer {
	f, err := os.OpenFile(filepath.Join(u.dir, "pulumi.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return io.Discard
	}
	u.closers = append(u.closers, f)
	return f
}

// downCloud destroys a cloud cluster's stack, then proves through the
// cloud's API that nothing carrying its tag or name is left. Published
// images stay for the next cluster unless purgeImages.
func downCloud(ctx context.Context, st *State, o Options, log io.Writer) error {
	t, err := targetOf(st)
	if err != nil {
		return err
	}
	eng := engine(o, log)
	if err := eng.DestroyStack(ctx, st.Name); err != nil && !errors.Is(err, infra.ErrNoStack) {
		return err
	}
	l, err := t.lister(ctx)
	if err != nil {
		return fmt.Errorf("the stack is destroyed, but what is left cannot be listed: %w", err)
	}
	if err := leftovers.Check(ctx, l, st.Name); err != nil {
		return err
	}
	if o.PurgeImages {
		stacks, err := eng.Stacks(ctx, imageStackPrefix(t))
		if err != nil {
			return err
		}
		for _, s := range stacks {
			if err := eng.DestroyStack(ctx, s); err != nil && !errors.Is(err, infra.ErrNoStack) {
				return err
			}
		}
	}
	return nil
}

// PreviewCloud shows what up would create on a cloud, without creating
// anything or needing credentials: the programs run offline under
// Pulumi's mock engine (the image stacks as on an account where nothing
// is published), and the machines and load balancer are priced.
func PreviewCloud(c *config.Cluster, o Options, w io.Writer) error {
	t, err := targetFor(c)
	if err != nil {
		return err
	}
	loc := t.location()
	imgs := map[string]cloud.Image{}
	for _, role := range []string{cloud.RoleMaster, cloud.RoleNode} {
		img := cloud.Image{Role: role, SHA256: "0000000000000000000000000000000000000000000000000000000000000000", Path: "(not built)", ID: "(published at up)"}
		kc, _ := images.Pinned().Component("kubernetes")
		base := filepath.Join(o.CacheDir, "vm-images", build.ImageName(components.Role(role), kc.Version))
		if sum, err := fileDigest(base + ".json"); err == nil {
			img.SHA256, img.Path = sum, base+"."+disk.Ext(t.imageFormat())
		}
		imgs[role] = img
	}
	for _, m := range c.Machines() {
		img := imgs[string(m.Role)]
		img.UEFI = m.Firmware != "bios"
		imgs[string(m.Role)] = img
	}
	cc, err := plannedCluster(c, t)
	if err != nil {
		return err
	}
	cc.Images = imgs
	if err := cc.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(w, "kubeup up --preview: cluster %s on %s (%s), nothing is created\n\n", c.Metadata.Name, t.provider(), strings.Trim(loc.Project+" "+loc.Zone, " "))
	total := 0
	for _, role := range []string{cloud.RoleMaster, cloud.RoleNode} {
		img := imgs[role]
		planned, err := cloud.Plan(t.imageProgram(img, false), imageStack(t, img))
		if err != nil {
			return fmt.Errorf("plan the %s image: %w", role, err)
		}
		total += len(planned)
		fmt.Fprintf(w, "Stack %s (once per image digest; reused if published):\n%s\n", imageStack(t, img), cloud.Summary(planned))
	}
	planned, err := cloud.Plan(t.program(cc), c.Metadata.Name)
	if err != nil {
		return fmt.Errorf("plan the cluster: %w", err)
	}
	total += len(planned)
	fmt.Fprintf(w, "Stack %s:\n%s\n", c.Metadata.Name, cloud.Summary(planned))
	cost, err := cloud.Estimate(cc)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "%d resources to create.\n\nEstimated cost:\n%s", total, cost)
	return nil
}

// plannedCluster is the cluster a config describes before anything exists:
// its machines with their types and pod ranges, placeholder user-data and
// no images (for the preview and the quota check).
func plannedCluster(c *config.Cluster, t cloudTarget) (cloud.Cluster, error) {
	loc := t.location()
	u := &bringUp{cfg: c, state: &State{Cloud: &loc}, cloud: &cloudBringUp{target: t}}
	cc, err := cloudCluster(u, false)
	if err != nil {
		return cc, err
	}
	n := c.Spec.Network
	for _, m := range c.Machines() {
		pc, err := components.PodCIDRFor(netip.MustParsePrefix(n.PodCIDR), n.NodeCIDRMaskSize, netip.MustParsePrefix(n.MachineCIDR), m.IP)
		if err != nil {
			return cc, err
		}
		cc.Machines = append(cc.Machines, cloud.Machine{Name: m.Name, Role: string(m.Role), Type: c.MachineType(m.Role), IP: m.IP.String(),
			DiskGiB: int((m.DiskBytes + 1<<30 - 1) >> 30), UserData: []byte("#cloud-config\n"), PodCIDR: pc.String()})
	}
	return cc, nil
}
