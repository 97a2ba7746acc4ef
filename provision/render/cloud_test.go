package render

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/cryptotest"
	"time"

	"kubeup.dev/kubeup/cloudinit"
	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
)

// The largest cluster a cloud user-data must carry: three masters, extra
// API names, two SSH keys (one RSA 4096), every addon.
func renderCloud(t *testing.T, provider string) (*Result, cloudinit.Policy) {
	t.Helper()
	cryptotest.SetGlobalRandom(t, 2)
	c, err := config.Load(repoFile(t, "examples/"+provider+".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	three, two := 3, 2
	c.Spec.Masters.Count, c.Spec.Nodes.Count = &three, &two
	c.Spec.SSH.AuthorizedKeys = []string{
		"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHk0yq3mJ1b7w0pYk6c7m2dQe9rW4y8Zt1n0b5d2s3f4 alice@laptop",
		"ssh-rsa " + strings.Repeat("A", 716) + " bob@workstation",
	}
	ct := c.CloudTarget()
	ct.SSHCIDRs = []string{"203.0.113.7/32"}
	if errs := config.Validate(c); len(errs) > 0 {
		t.Fatal(errs)
	}
	lb := "kubeup-demo-aws-api-0123456789abcdef.elb.us-east-1.amazonaws.com"
	policy := cloudinit.PolicyAWS()
	if provider == "gcp" {
		lb, policy = "34.120.200.17", cloudinit.PolicyGCP()
	}
	pc := PKICluster(c)
	pc.ExtraAPIServerSANs = []string{lb, "api.demo.example.com", "kubernetes.demo.example.com"}
	b, err := pki.Generate(pc, pki.Options{Now: func() time.Time { return time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC) }, Rand: seeded(2)})
	if err != nil {
		t.Fatal(err)
	}
	var local []string
	if provider == "gcp" {
		local = []string{lb}
	}
	r, err := Render(c, b, Options{
		MasterLocalAddresses: local,
		Images:               components.Images{Pause: "registry.kubeup.dev/pause:3.10", CoreDNS: "registry.kubeup.dev/coredns:v1.15.0", Testbox: "registry.kubeup.dev/testbox:1"},
		Policy:               policy,
		APIEndpoint:          fmt.Sprintf("https://%s:%d", lb, components.APIServerPort),
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, policy
}

// Every machine's user-data fits its cloud's limit with a tenth to spare;
// the masters' configs name the load balancer (the external endpoint), and
// every machine's API clients go through its node-local balancer over all
// the masters (KubePrism's design: no hairpin through the cloud's load
// balancer, which an NLB target cannot use to reach itself); the configs
// pass cloud-init's schema.
func TestCloudUserDataFits(t *testing.T) {
	// Locally and on metal the host reaches the agents without it.
	if renderExample(t, nil).Cluster.Addons.AgentAccess {
		t.Error("a local cluster runs the agent-access addon")
	}
	for _, provider := range []string{"aws", "gcp"} {
		r, policy := renderCloud(t, provider)
		if !r.Cluster.Addons.AgentAccess {
			t.Errorf("%s: no agent-access addon: the host would not reach the agents", provider)
		}
		for _, m := range r.Machines {
			size := len(m.UserData)
			t.Logf("%s %s: user-data %d bytes (%d plain), limit %d", provider, m.Name, size, len(m.CloudConfig), policy.Limit)
			if room := policy.Limit - policy.Limit/10; size > room {
				t.Errorf("%s %s: user-data is %d bytes, over 90 %% of the %d-byte limit", provider, m.Name, size, policy.Limit)
			}
			if m.Role == config.RoleMaster && !strings.Contains(string(m.CloudConfig), r.Cluster.APIServerEndpoint) {
				t.Errorf("%s %s: the user-data does not name the load balancer %s", provider, m.Name, r.Cluster.APIServerEndpoint)
			}
			route := "ip, route, replace, local, 34.120.200.17/32, dev, lo"
			if got := strings.Contains(string(m.CloudConfig), route); got != (provider == "gcp" && m.Role == config.RoleMaster) {
				t.Errorf("%s %s: local route for the load balancer's address: %v", provider, m.Name, got)
			}
			for _, master := range r.Cluster.Masters {
				if !strings.Contains(string(m.CloudConfig), fmt.Sprintf("%s:%d", master.IP, components.APIServerPort)) {
					t.Errorf("%s %s: its API balancer does not reach master %s", provider, m.Name, master.IP)
				}
			}
		}
		// Pod ranges are fixed by address (the cloud routes to them): the
		// controller-manager allocates none, the addon manager sets them.
		for _, m := range r.Machines {
			want, err := components.PodCIDRFor(r.Cluster.PodCIDR, r.Cluster.NodeCIDRMaskSize, r.Cluster.MachineCIDR, m.IP)
			if err != nil || r.Cluster.PodCIDRs[m.Name] != want.String() {
				t.Errorf("%s %s: pod range %q, want %s (%v)", provider, m.Name, r.Cluster.PodCIDRs[m.Name], want, err)
			}
			if m.Role == config.RoleMaster && (!strings.Contains(string(m.CloudConfig), "--allocate-node-cidrs=false") || !strings.Contains(string(m.CloudConfig), m.Name+": "+want.String())) {
				t.Errorf("%s %s: the controller-manager allocates pod ranges, or the addon manager lacks them", provider, m.Name)
			}
		}
		if _, err := exec.LookPath("cloud-init"); err != nil {
			continue
		}
		dir := t.TempDir()
		for _, m := range r.Machines[:1] {
			p := filepath.Join(dir, m.Name)
			if err := os.WriteFile(p, m.CloudConfig, 0o600); err != nil {
				t.Fatal(err)
			}
			out, err := exec.Command("cloud-init", "schema", "--config-file", p).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "Valid cloud-config") {
				t.Errorf("%s %s: cloud-init schema: %v\n%s", provider, m.Name, err, out)
			}
		}
	}
}
