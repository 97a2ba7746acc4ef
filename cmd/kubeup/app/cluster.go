package app

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/verify"
)

// clusterFlags are shared by the commands that act on a cluster.
type clusterFlags struct {
	name, dataDir, cacheDir, backend string
}

func (f *clusterFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.name, "name", "", "cluster name (default: the config's metadata.name, or kubeup)")
	cmd.Flags().StringVar(&f.dataDir, "data-dir", "", "kubeup's data directory: clusters and Pulumi state (default $KUBEUP_DATA_DIR or ~/.local/share/kubeup)")
	cmd.Flags().StringVar(&f.cacheDir, "cache-dir", "", "cache directory: artifacts and images (default $KUBEUP_CACHE_DIR or ~/.cache/kubeup)")
	cmd.Flags().StringVar(&f.backend, "backend", os.Getenv("KUBEUP_PULUMI_BACKEND"), "Pulumi state backend URL (default file:// under the data directory; e.g. s3://bucket/prefix)")
}

func (f *clusterFlags) options(e *cli.Env) (cluster.Options, error) {
	var o cluster.Options
	var err error
	if o.DataDir = f.dataDir; o.DataDir == "" {
		if o.DataDir, err = cluster.DefaultDataDir(); err != nil {
			return o, err
		}
	}
	if o.CacheDir = f.cacheDir; o.CacheDir == "" {
		if o.CacheDir, err = artifacts.DefaultCacheDir(); err != nil {
			return o, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return o, err
	}
	o.BinDir = filepath.Dir(self)
	o.Backend = f.backend
	o.Progress = e.Stdout
	return o, nil
}

// loadConfig reads the config file (the built-in default when path is
// empty), applies --name and edit (a command's own overrides), validates it
// and resolves the options: bad input is exit status 2.
func (f *clusterFlags) loadConfig(e *cli.Env, path string, edit func(*config.Cluster)) (*config.Cluster, cluster.Options, error) {
	c, err := loadConfig(path)
	if err != nil {
		return nil, cluster.Options{}, err
	}
	if f.name != "" {
		c.Metadata.Name = f.name
	}
	if edit != nil {
		edit(c)
	}
	if errs := config.Validate(c); len(errs) > 0 {
		return nil, cluster.Options{}, &cli.ExitError{Code: 2, Err: errs}
	}
	o, err := f.options(e)
	if err != nil {
		return nil, o, &cli.ExitError{Code: 2, Err: err}
	}
	return c, o, nil
}

func (f *clusterFlags) clusterName() string {
	if f.name != "" {
		return f.name
	}
	return "kubeup"
}

func newUpCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var configPath, timings string
	var nodes int
	var doVerify, keepServing, preview, skipQuota bool
	var timeout, installTimeout time.Duration
	cmd := &cobra.Command{
		Use:   "up [--config FILE] [--name NAME] [--nodes N] [--preview]",
		Short: "Create a cluster (local QEMU VMs through Pulumi) and wait until it is Ready",
		Long: `up builds the images if they are missing, renders every machine's cloud-init
seed, deploys the machines with Pulumi (a local vde switch and QEMU VMs through
kubeup's own provider), and waits until every node is Ready and every
kube-system pod is Ready, printing one line per phase. It writes an admin
kubeconfig (kubeup kubeconfig prints it again) and the phase timings.

On the metal target (spec.target.metal) up serves the network boot instead:
each machine, powered on with network boot, installs its role's image to its
disk and boots from it; up shows which machine fetched what, waits for all of
them and the same readiness, then stops serving (--keep-serving leaves it up).

On AWS and GCP (spec.target.aws, spec.target.gcp) up publishes each role's
image once per digest (kept for the next cluster), creates the network, the
firewall and the API load balancer, renders the machines with the load
balancer's name in the API server's certificate and their kubeconfigs, then
creates the instances and waits as for local VMs. --preview shows what would
be created and the hourly cost, offline, without creating anything.

Without flags: the built-in default, one master and one node, named kubeup.
If the cluster does not become Ready, up says which machine and which unit is
failing, with the end of that unit's journal.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, o, err := f.loadConfig(e, configPath, func(c *config.Cluster) {
				if cmd.Flags().Changed("nodes") {
					c.Spec.Nodes.Count, c.Spec.Nodes.Names = &nodes, nil
				}
			})
			if err != nil {
				return err
			}
			o.ReadyTimeout, o.TimingsFile = timeout, timings
			o.KeepServing, o.InstallTimeout = keepServing, installTimeout
			o.SkipQuotaCheck = skipQuota
			if preview {
				if p := c.Spec.Target.Provider; p != config.ProviderAWS && p != config.ProviderGCP {
					return &cli.ExitError{Code: 2, Err: fmt.Errorf("--preview is for the aws and gcp targets; spec.target.provider is %q", p)}
				}
				return cluster.PreviewCloud(c, o, e.Stdout)
			}
			fmt.Fprintf(e.Stdout, "kubeup up: cluster %q, %d masters, %d nodes\n", c.Metadata.Name, len(c.Masters()), len(c.Nodes()))
			st, t, err := cluster.Up(cmd.Context(), c, o)
			if err != nil {
				if t != nil {
					_ = t.Write(timings, o.DataDir)
				}
				return err
			}
			path, _, _ := cluster.Kubeconfig(o.DataDir, st.Name)
			fmt.Fprintf(e.Stdout, "cluster %q is Ready: kubectl --kubeconfig %s get nodes\n", st.Name, path)
			if doVerify {
				if err := runVerify(cmd, e, o, st.Name); err != nil {
					_ = t.Write(timings, o.DataDir)
					return err
				}
				t.Add("checks passed")
				return t.Write(timings, o.DataDir)
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "cluster config file (default: the built-in 1 master + 1 node)")
	cmd.Flags().IntVar(&nodes, "nodes", 1, "number of nodes (overrides spec.nodes)")
	cmd.Flags().StringVar(&timings, "timings", "", "write phase timings as JSON to this file (default <data dir>/clusters/NAME/timings.json)")
	cmd.Flags().BoolVar(&doVerify, "verify", false, "run kubeup verify once the cluster is Ready")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long to wait for each readiness phase")
	cmd.Flags().BoolVar(&keepServing, "keep-serving", false, "metal: keep the boot server up after the cluster is Ready, until interrupted")
	cmd.Flags().DurationVar(&installTimeout, "install-timeout", time.Hour, "metal: how long to wait for every machine to network-boot and install")
	cmd.Flags().BoolVar(&skipQuota, "skip-quota-check", false, "aws, gcp: do not read the account's vCPU quotas before creating anything")
	cmd.Flags().BoolVar(&preview, "preview", false, "aws, gcp: show the resources up would create and their hourly cost, create nothing")
	return cmd
}

func newReplaceCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var configPath string
	var machines []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "replace --machine NAME [--config FILE]",
		Short: "Recreate machines of a running local cluster from their images, one at a time",
		Long: `replace recreates machines while the cluster keeps serving: it drains each
one (cordon, evict its pods), for a master removes its etcd member and adds
it back as a new one (through another master's agent), deletes its Node,
has Pulumi replace its VM (a new disk from the role's image: also how a
machine moves to a newer image) and waits, as up does, until every node and
kube-system pod is Ready again. The new machine keeps its name and address.

Give the config the cluster was made from (--config), as for up. Replacing
a master needs the others to keep etcd's quorum: replace them one by one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, o, err := f.loadConfig(e, configPath, nil)
			if err != nil {
				return err
			}
			if err := cluster.CheckReplace(c, o.DataDir, machines); err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			o.ReadyTimeout, o.Replace = timeout, machines
			fmt.Fprintf(e.Stdout, "kubeup replace: cluster %q, %s\n", c.Metadata.Name, strings.Join(machines, ", "))
			st, t, err := cluster.Up(cmd.Context(), c, o)
			if err != nil {
				if t != nil {
					_ = t.Write("", o.DataDir)
				}
				return err
			}
			fmt.Fprintf(e.Stdout, "cluster %q is Ready with %s replaced\n", st.Name, strings.Join(machines, ", "))
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVarP(&configPath, "config", "c", "", "the cluster's config file (default: the built-in 1 master + 1 node)")
	cmd.Flags().StringSliceVar(&machines, "machine", nil, "machine to replace (repeat or comma-separate for several)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long to wait for each readiness phase")
	return cmd
}

func newDownCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var purgeImages bool
	cmd := &cobra.Command{
		Use:   "down [--name NAME]",
		Short: "Destroy a cluster and everything it created",
		Long: `down runs Pulumi destroy, removes the stack, then stops any process and removes
every file the cluster left, also after a failed or interrupted up. With
nothing to destroy it says so and exits 0.

On AWS and GCP down then lists, through the cloud's API, everything that
still carries the cluster's tag (kubeup.dev/cluster) or label
(kubeup-cluster) or name, and fails naming each leftover and how to delete
it. Published images are kept for the next cluster; --purge-images removes
those of the cluster's region (or project) too.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			start := time.Now()
			name := f.clusterName()
			o.PurgeImages = purgeImages
			err = cluster.Down(cmd.Context(), name, o)
			if errors.Is(err, cluster.ErrNothingToDestroy) {
				fmt.Fprintf(e.Stdout, "cluster %q: nothing to destroy\n", name)
				return nil
			}
			if err != nil {
				return err
			}
			if left := cluster.Leftovers(o.DataDir, name); len(left) > 0 {
				return fmt.Errorf("cluster %q destroyed but processes remain: %s", name, strings.Join(left, ", "))
			}
			fmt.Fprintf(e.Stdout, "cluster %q destroyed in %s\n", name, time.Since(start).Round(100*time.Millisecond))
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&purgeImages, "purge-images", false, "aws, gcp: also remove the images kubeup published in the cluster's region or project")
	return cmd
}

func newStatusCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status [--name NAME]",
		Short: "Show each machine's VM, Node condition and kubeup units",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			ms, err := cluster.Status(cmd.Context(), o.DataDir, f.clusterName())
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(e.Stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(ms)
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "MACHINE\tROLE\tIP\tVM\tNODE\tUNITS")
			for _, m := range ms {
				units := m.Agent
				if units == "" {
					var parts []string
					for _, u := range m.Units {
						s := strings.TrimSuffix(u.Name, ".service") + "=" + u.ActiveState
						if u.Restarts > 0 {
							s += fmt.Sprintf("(%d restarts)", u.Restarts)
						}
						parts = append(parts, s)
					}
					units = strings.Join(parts, " ")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Role, m.IP, m.VM, m.Node, units)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func newKubeconfigCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var pathOnly bool
	cmd := &cobra.Command{
		Use:   "kubeconfig [--name NAME] [--path]",
		Short: "Print the cluster's admin kubeconfig (or its path)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			path, data, err := cluster.Kubeconfig(o.DataDir, f.clusterName())
			if err != nil {
				return err
			}
			if pathOnly {
				fmt.Fprintln(e.Stdout, path)
				return nil
			}
			_, err = e.Stdout.Write(data)
			return err
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&pathOnly, "path", false, "print the file's path instead of its content")
	return cmd
}

func newVerifyCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var cis bool
	cmd := &cobra.Command{
		Use:   "verify [--name NAME] [--cis]",
		Short: "Prove a running cluster works: controllers, pod network, Services, kubelet features",
		Long: `verify runs real workloads through the cluster and checks that each part does
its job. With --cis it instead reads every machine's component flags and
configuration files through its agent and reports each applicable item of the
CIS Kubernetes Benchmark (v1.10) as PASS, FAIL or SKIP (a deliberate deviation,
with its reason) and the evidence seen; it fails when any item fails.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o, err := f.options(e)
			if err != nil {
				return &cli.ExitError{Code: 2, Err: err}
			}
			if cis {
				return runCIS(cmd, e, o, f.clusterName())
			}
			return runVerify(cmd, e, o, f.clusterName())
		},
	}
	f.add(cmd)
	cmd.Flags().BoolVar(&cis, "cis", false, "check the CIS Kubernetes Benchmark items on every machine instead")
	return cmd
}

// loadTarget reads what verify needs of a cluster: its state and PKI.
func loadTarget(o cluster.Options, name string) (*cluster.State, *pki.Bundle, error) {
	st, err := cluster.LoadState(o.DataDir, name)
	if err != nil {
		return nil, nil, err
	}
	b, err := cluster.LoadBundle(o.DataDir, name)
	if err != nil {
		return nil, nil, err
	}
	return st, b, nil
}

func runCIS(cmd *cobra.Command, e *cli.Env, o cluster.Options, name string) error {
	st, b, err := loadTarget(o, name)
	if err != nil {
		return err
	}
	results, err := verify.RunCIS(cmd.Context(), verify.Target{State: st, Bundle: b, Out: e.Stdout})
	if err != nil {
		return err
	}
	count := map[string]int{}
	for _, r := range results {
		count[r.Status]++
	}
	fmt.Fprintf(e.Stdout, "CIS: %d passed, %d failed, %d skipped (deliberate, see the README)\n",
		count[verify.CISPass], count[verify.CISFail], count[verify.CISSkip])
	if count[verify.CISFail] > 0 {
		return fmt.Errorf("%d CIS items failed", count[verify.CISFail])
	}
	return nil
}

func runVerify(cmd *cobra.Command, e *cli.Env, o cluster.Options, name string) error {
	st, b, err := loadTarget(o, name)
	if err != nil {
		return err
	}
	_, kc, err := cluster.Kubeconfig(o.DataDir, name)
	if err != nil {
		return err
	}
	imgs, err := cluster.Images(o.BinDir)
	if err != nil {
		return err
	}
	results, err := verify.Run(cmd.Context(), verify.Target{State: st, Bundle: b, Kubeconfig: kc,
		Images: imgs, Out: e.Stdout})
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	if err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d checks failed", failed, len(results))
	}
	fmt.Fprintf(e.Stdout, "all %d checks passed\n", len(results))
	return nil
}
