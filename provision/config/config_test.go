package config

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// The README's example must load and equal the built-in default (apart from
// its name): the comments there say "the values shown are the defaults".
func TestExampleConfigIsTheDefault(t *testing.T) {
	c, err := Load(filepath.Join(repoRoot(t), "examples", "cluster.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(c)
	want, _ := json.Marshal(Default("demo"))
	if string(got) != string(want) {
		t.Errorf("examples/cluster.yaml differs from Default(\"demo\"):\n got %s\nwant %s", got, want)
	}
	ms := c.Machines()
	if len(ms) != 2 || ms[0].Name != "master-0" || ms[0].IP.String() != "10.77.0.10" ||
		ms[1].Name != "node-0" || ms[1].IP.String() != "10.77.0.100" || ms[1].MemoryMiB != 2048 ||
		ms[0].Firmware != FirmwareUEFI || ms[1].Firmware != FirmwareUEFI {
		t.Errorf("machines = %+v", ms)
	}
	if got := c.APIServerServiceIP().String(); got != "10.96.0.1" {
		t.Errorf("APIServerServiceIP = %s", got)
	}
	if got := c.DNSServiceIP().String(); got != "10.96.0.10" {
		t.Errorf("DNSServiceIP = %s", got)
	}
}

func TestMinimalConfigGetsDefaults(t *testing.T) {
	c, err := Parse([]byte("apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: x}\nspec:\n  masters: {names: [a, b, c]}\n  nodes: {count: 2}\n"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, m := range c.Machines() {
		names = append(names, m.Name+"="+m.IP.String())
	}
	want := "a=10.77.0.10 b=10.77.0.11 c=10.77.0.12 node-0=10.77.0.100 node-1=10.77.0.101"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("machines %s, want %s", got, want)
	}
}

const head = "apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: demo}\n"

// Each malformed config and the exact error lines it must produce.
func TestInvalidConfigs(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"empty", "", []string{"the file is empty; start from examples/cluster.yaml"}},
		{"not yaml", "spec: [", nil},
		{"bad apiVersion", "apiVersion: v1\nkind: Cluster\nmetadata: {name: demo}\n",
			[]string{`apiVersion: "v1" is not supported; use kubeup.dev/v1alpha1`}},
		{"bad kind", "apiVersion: kubeup.dev/v1alpha1\nkind: Pod\nmetadata: {name: demo}\n",
			[]string{`kind: "Pod" is not supported; use Cluster`}},
		{"missing name", "apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\n",
			[]string{"metadata.name: is required"}},
		{"bad name", "apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: My_Cluster}\n",
			[]string{`metadata.name: "My_Cluster" is not a valid DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`}},
		{"unknown field", head + "spec:\n  network: {podCidr: 10.0.0.0/16}\n",
			[]string{"spec.network.podCidr: unknown field (check spelling against examples/cluster.yaml)"}},
		{"wrong type", head + "spec:\n  masters: {count: three}\n",
			[]string{"spec.masters.count: must be of type integer, not string"}},
		{"pod CIDR not a CIDR", head + "spec:\n  network: {podCIDR: 10.0.0.0/33}\n",
			[]string{`spec.network.podCIDR: "10.0.0.0/33" is not a CIDR`}},
		{"host bits", head + "spec:\n  network: {serviceCIDR: 10.96.0.1/12}\n",
			[]string{`spec.network.serviceCIDR: "10.96.0.1/12" has host bits set; use 10.96.0.0/12`}},
		{"overlapping CIDRs", head + "spec:\n  network: {podCIDR: 10.96.0.0/16}\n",
			[]string{"spec.network.serviceCIDR: 10.96.0.0/12 overlaps spec.network.podCIDR 10.96.0.0/16"}},
		{"overlaps slirp", head + "spec:\n  network: {machineCIDR: 10.0.0.0/16}\n",
			[]string{"spec.network.machineCIDR: 10.0.0.0/16 overlaps 10.0.2.0/24, which QEMU's user network uses on the local target"}},
		{"ipv6", head + "spec:\n  network: {podCIDR: 'fd00::/48'}\n",
			[]string{`spec.network.podCIDR: "fd00::/48" is IPv6; only IPv4 is supported`}},
		{"even masters", head + "spec:\n  masters: {count: 2}\n",
			[]string{"spec.masters: 2 masters is an even number; etcd needs an odd number (1, 3, 5) to keep a quorum"}},
		{"zero masters", head + "spec:\n  masters: {count: 0}\n",
			[]string{"spec.masters.count: 0 is out of range; use 1 to 7"}},
		{"duplicate names", head + "spec:\n  masters: {names: [a]}\n  nodes: {names: [b, a]}\n",
			[]string{`spec.nodes.names[1]: duplicate machine name "a" (also spec.masters.names[0])`}},
		{"invalid machine name", head + "spec:\n  nodes: {names: [Node_1]}\n",
			[]string{`spec.nodes.names[0]: "Node_1" is not a valid DNS label (lowercase letters, digits and '-', starting and ending with a letter or digit)`}},
		{"count and names disagree", head + "spec:\n  nodes: {count: 3, names: [a, b]}\n",
			[]string{"spec.nodes.count: is 3 but 2 names are listed; set count or names, not both"}},
		{"unsupported version", head + "spec:\n  kubernetesVersion: v1.29.0\n",
			[]string{`spec.kubernetesVersion: "v1.29.0" is not supported; supported: v1.37.2`}},
		{"bad dns domain", head + "spec:\n  network: {dnsDomain: Cluster_Local}\n",
			[]string{`spec.network.dnsDomain: "Cluster_Local" is not a valid DNS domain (lowercase labels separated by dots)`}},
		{"bad memory", head + "spec:\n  nodes: {memory: lots}\n",
			[]string{`spec.nodes.memory: "lots" is not a quantity (for example 2Gi)`}},
		{"too little memory", head + "spec:\n  masters: {memory: 512Mi}\n",
			[]string{`spec.masters.memory: "512Mi" is less than the 1024Mi a machine needs`}},
		{"bad firmware", head + "spec:\n  nodes: {firmware: efi}\n",
			[]string{`spec.nodes.firmware: "efi" is not a firmware; use uefi or bios`}},
		{"node mask", head + "spec:\n  network: {podCIDR: 10.244.0.0/24, nodeCIDRMaskSize: 24}\n",
			[]string{"spec.network.nodeCIDRMaskSize: 24 must be longer than the pod CIDR's /24 and at most 28"}},
		{"pod CIDR too small", head + "spec:\n  nodes: {count: 5}\n  network: {podCIDR: 10.244.0.0/23, nodeCIDRMaskSize: 24}\n",
			[]string{`spec.network.podCIDR: "10.244.0.0/23" holds only 2 /24 node blocks for 6 machines`}},
		{"snapshot interval not a duration", head + "spec:\n  etcd: {snapshotInterval: hourly}\n",
			[]string{`spec.etcd.snapshotInterval: "hourly" is not a duration (for example 1h or 30m; 0s turns snapshots off)`}},
		{"snapshot interval too short", head + "spec:\n  etcd: {snapshotInterval: 5m}\n",
			[]string{"spec.etcd.snapshotInterval: 5m is too short; use at least 10m, or 0s to turn snapshots off"}},
		{"snapshot interval negative", head + "spec:\n  etcd: {snapshotInterval: -1h}\n",
			[]string{"spec.etcd.snapshotInterval: -1h is negative; use at least 10m, or 0s to turn snapshots off"}},
		{"no snapshots kept", head + "spec:\n  etcd: {snapshotsKept: 0}\n",
			[]string{"spec.etcd.snapshotsKept: 0 is out of range; use 1 to 1000"}},
		{"too many snapshots kept", head + "spec:\n  etcd: {snapshotInterval: 10m, snapshotsKept: 1001}\n",
			[]string{"spec.etcd.snapshotsKept: 1001 is out of range; use 1 to 1000"}},
		{"bad provider", head + "spec:\n  target: {provider: azure}\n",
			[]string{`spec.target.provider: "azure" is not one of local, metal, aws, gcp`}},
		{"aws needs its block", head + "spec:\n  target: {provider: aws}\n",
			[]string{"spec.target.aws: is required when spec.target.provider is aws (at least region and allowedCIDRs)"}},
		{"aws needs region and allowed CIDRs", head + "spec:\n  target: {provider: aws, aws: {instanceType: t3.huge}}\n",
			[]string{"spec.target.aws.region: is required when spec.target.provider is aws, e.g. us-east-1",
				`spec.target.aws.instanceType: "t3.huge" is not a machine type kubeup knows for aws; use one of c6i.large, c6i.xlarge, m6i.large, m6i.xlarge, m7i.large, m7i.xlarge, r6i.large, t3.large, t3.medium, t3.xlarge`,
				`spec.target.aws.allowedCIDRs: is required: the addresses that may reach the API server, e.g. ["203.0.113.7/32"] for your own (kubeup does not open the API to the whole internet)`}},
		{"aws refuses the whole internet", head + "spec:\n  target: {provider: aws, aws: {region: eu-west-1, zone: us-east-1a, allowedCIDRs: [0.0.0.0/0, 10.1.2.3/8, nope], sshCIDRs: [198.51.100.0/24], vpc: vpc-1, tags: {\"aws:x\": v}}}\n",
			[]string{`spec.target.aws.zone: "us-east-1a" is not an availability zone of region "eu-west-1", such as eu-west-1a`,
				`spec.target.aws.allowedCIDRs[0]: "0.0.0.0/0" opens the cluster to the whole internet; name the addresses that need access`,
				`spec.target.aws.allowedCIDRs[1]: "10.1.2.3/8" has host bits set; use 10.0.0.0/8`,
				`spec.target.aws.allowedCIDRs[2]: "nope" is not a CIDR such as 203.0.113.0/24`,
				"spec.target.aws.sshCIDRs: is set but spec.ssh.authorizedKeys is empty: nobody could log in",
				"spec.target.aws.subnet: an existing network needs both vpc and subnet",
				"spec.target.aws.tags.aws:x: keys starting aws: or kubeup.dev/ are reserved"}},
		{"aws tag of the wrong type", head + "spec:\n  target: {provider: aws, aws: {region: us-east-1, allowedCIDRs: [203.0.113.0/24], tags: {a: true}}}\n",
			[]string{"spec.target.aws.tags: must be of type string, not bool"}},
		{"cloud pod ranges by address", head + "spec:\n  network: {podCIDR: 10.244.0.0/20}\n  target: {provider: gcp, gcp: {project: proj-123456, zone: us-central1-a, allowedCIDRs: [203.0.113.0/24]}}\n",
			[]string{"spec.network.podCIDR: machine 10.77.0.100 is host 100 of 10.77.0.0/24, but pod CIDR 10.244.0.0/20 has only 16 blocks of /24: on a cloud each machine's pod range is fixed by its address; use a larger pod CIDR or node mask"}},
		{"gcp needs project and zone", head + "spec:\n  target: {provider: gcp, gcp: {machineType: n1-standard-1, allowedCIDRs: [203.0.113.0/24], tags: {Team: x}}}\n",
			[]string{"spec.target.gcp.project: is required when spec.target.provider is gcp: the project id (gcloud config get-value project)",
				"spec.target.gcp.zone: is required when spec.target.provider is gcp, e.g. us-central1-a",
				`spec.target.gcp.machineType: "n1-standard-1" is not a machine type kubeup knows for gcp; use one of c3-standard-4, e2-medium, e2-standard-2, e2-standard-4, n2-standard-2, n2-standard-4, n2d-standard-2, t2d-standard-2`,
				"spec.target.gcp.tags.Team: GCP labels are lower-case letters, digits, - and _, up to 63 characters, keys starting with a letter"}},
		{"bad accelerator and port", head + "spec:\n  target: {local: {accelerator: hvf, apiServerPort: 80}}\n",
			[]string{"spec.target.local.apiServerPort: 80 is out of range; use 0 (pick a free port) or 1024 to 65535",
				`spec.target.local.accelerator: "hvf" is not one of auto, kvm, tcg`}},
		{"addons need dns", head + "spec:\n  addons: {dns: false, monitoring: false}\n",
			[]string{"spec.addons.logging: needs spec.addons.dns (it finds its peers by cluster DNS names); turn dns on or this off",
				"spec.addons.ui: needs spec.addons.dns (it finds its peers by cluster DNS names); turn dns on or this off"}},
		{"bad pod security levels", head + "spec:\n  podSecurity: {enforce: Baseline, warn: strict}\n",
			[]string{`spec.podSecurity.enforce: "Baseline" is not one of privileged, baseline, restricted`,
				`spec.podSecurity.warn: "strict" is not one of privileged, baseline, restricted`}},
		{"leaf lifetime not a duration", head + "spec:\n  pki: {leafLifetime: 1y}\n",
			[]string{`spec.pki.leafLifetime: "1y" is not a duration (for example 8760h, or 30m for a renewal test)`}},
		{"leaf lifetime too short", head + "spec:\n  pki: {leafLifetime: 10m}\n",
			[]string{"spec.pki.leafLifetime: 10m is shorter than the minimum of 20m (clients take up to 5 minutes to switch to a renewed certificate)"}},
		{"bad ssh key", head + "spec:\n  ssh: {authorizedKeys: [hunter2]}\n",
			[]string{`spec.ssh.authorizedKeys[0]: is not an OpenSSH public key (expected "ssh-ed25519 AAAA... comment")`}},
		{"two documents", head + "spec:\n  nodes: {count: 2}\n---\n" + head,
			[]string{"line 6: a second YAML document starts here; a config file holds one cluster (one file per cluster)"}},
		{"a setting after a separator", head + "---\nspec: {nodes: {count: 3}}\n---\n",
			[]string{"line 4: a second YAML document starts here; a config file holds one cluster (one file per cluster)"}},
		{"every problem at once", "apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: ''}\nspec:\n  masters: {count: 4}\n  network: {podCIDR: 10.0.0.0/33, dnsDomain: '-x'}\n",
			[]string{"metadata.name: is required",
				"spec.masters: 4 masters is an even number; etcd needs an odd number (1, 3, 5) to keep a quorum",
				`spec.network.podCIDR: "10.0.0.0/33" is not a CIDR`,
				`spec.network.dnsDomain: "-x" is not a valid DNS domain (lowercase labels separated by dots)`}},
	}
	if len(cases) < 15 {
		t.Fatalf("only %d malformed configs", len(cases))
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			if err == nil {
				t.Fatal("no error")
			}
			if tc.want == nil { // a syntax error: just a clear message
				if !strings.Contains(err.Error(), "not valid YAML") {
					t.Errorf("error %q does not say the YAML is invalid", err)
				}
				return
			}
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %q is not an ErrorList", err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}

// One document, with the separators tools write around it, is fine.
func TestSeparatorsAroundOneDocument(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{"---\n" + head, head + "---\n", head + "...\n", "---\n" + head + "---\n# nothing more\n"} {
		if _, err := Parse([]byte(doc)); err != nil {
			t.Errorf("%q: %v", doc, err)
		}
	}
	// A broken second document is still a second document: refused.
	if _, err := Parse([]byte(head + "---\nspec: [\n")); err == nil || !strings.Contains(err.Error(), "not valid YAML") {
		t.Errorf("broken second document: %v", err)
	}
}

// Snapshots are on by default (hourly, 24 kept); "0s" turns them off and
// is valid, and the bounds themselves are accepted.
func TestEtcdSnapshotSettings(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(head))
	if err != nil {
		t.Fatal(err)
	}
	if e := c.Spec.Etcd; e.SnapshotInterval != "1h" || e.SnapshotEvery() != time.Hour || e.Kept() != 24 {
		t.Errorf("defaults: %+v (every %s, kept %d)", e, e.SnapshotEvery(), e.Kept())
	}
	for _, doc := range []string{"{snapshotInterval: 0s}", "{snapshotInterval: 10m, snapshotsKept: 1}", "{snapshotInterval: 720h, snapshotsKept: 1000}"} {
		c, err := Parse([]byte(head + "spec:\n  etcd: " + doc + "\n"))
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		if doc == "{snapshotInterval: 0s}" && (c.Spec.Etcd.SnapshotEvery() != 0 || c.Spec.Etcd.Kept() != 24) {
			t.Errorf("%s: %+v", doc, c.Spec.Etcd)
		}
	}
}

func TestErrorListMessage(t *testing.T) {
	l := ErrorList{{"a", "x"}, {"b", "y"}}
	if got, want := l.Error(), "invalid cluster config (2 problems):\n  a: x\n  b: y"; got != want {
		t.Errorf("%q != %q", got, want)
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.yaml"))
	if err == nil || !strings.Contains(err.Error(), "nope.yaml") {
		t.Errorf("error %v does not name the file", err)
	}
}

func TestCloudExamples(t *testing.T) {
	for _, tc := range []struct {
		file           string
		master, node   string
		provider, zone string
	}{
		{"aws.yaml", "t3.medium", "t3.large", ProviderAWS, "us-east-1a"},
		{"gcp.yaml", "e2-medium", "e2-standard-2", ProviderGCP, "us-central1-a"},
	} {
		c, err := Load(filepath.Join("..", "..", "examples", tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if c.Spec.Target.Provider != tc.provider {
			t.Errorf("%s: provider %q", tc.file, c.Spec.Target.Provider)
		}
		if got := c.MachineType(RoleMaster); got != tc.master {
			t.Errorf("%s: master type %q, want %q", tc.file, got, tc.master)
		}
		if got := c.MachineType(RoleNode); got != tc.node {
			t.Errorf("%s: node type %q, want %q", tc.file, got, tc.node)
		}
		if ct := c.CloudTarget(); ct == nil || len(ct.AllowedCIDRs) != 1 || ct.Tags["team"] != "platform" {
			t.Errorf("%s: cloud target %+v", tc.file, ct)
		}
	}
}

func TestMachineTypeDefaults(t *testing.T) {
	c := Default("x")
	c.Spec.Target = Target{Provider: ProviderAWS, AWS: &AWSTarget{Region: "eu-west-1", InstanceType: "m6i.large", NodeInstanceType: "c6i.large"}}
	if got := c.MachineType(RoleMaster); got != "m6i.large" {
		t.Errorf("master %q: the shared type applies", got)
	}
	if got := c.MachineType(RoleNode); got != "c6i.large" {
		t.Errorf("node %q: the role's own type wins", got)
	}
	if z := c.Spec.Target.AWS.AWSZone(); z != "eu-west-1a" {
		t.Errorf("zone %q", z)
	}
	c.Spec.Target = Target{Provider: ProviderGCP, GCP: &GCPTarget{Zone: "europe-west4-b"}}
	if got := c.MachineType(RoleMaster); got != "e2-medium" {
		t.Errorf("gcp master default %q", got)
	}
	if r := c.Spec.Target.GCP.Region(); r != "europe-west4" {
		t.Errorf("region %q", r)
	}
	c.Spec.Target = Target{Provider: ProviderLocal}
	if got := c.MachineType(RoleNode); got != "" {
		t.Errorf("local machine type %q", got)
	}
}
