package gcp

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"fmt"
	"hash/crc32"
	"maps"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/asset"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"

	"kubeup.dev/kubeup/infra/cloud"
	"kubeup.dev/kubeup/test/golden"
)

// Type tokens of the resources the programs register.
const (
	tNetwork  = "gcp:compute/network:Network"
	tSubnet   = "gcp:compute/subnetwork:Subnetwork"
	tFirewall = "gcp:compute/firewall:Firewall"
	tAddress  = "gcp:compute/address:Address"
	tHealth   = "gcp:compute/regionHealthCheck:RegionHealthCheck"
	tGroup    = "gcp:compute/instanceGroup:InstanceGroup"
	tBackend  = "gcp:compute/regionBackendService:RegionBackendService"
	tRule     = "gcp:compute/forwardingRule:ForwardingRule"
	tInstance = "gcp:compute/instance:Instance"
	tRoute    = "gcp:compute/route:Route"
	tImage    = "gcp:compute/image:Image"
	tBucket   = "gcp:storage/bucket:Bucket"
	tObject   = "gcp:storage/bucketObject:BucketObject"
)

// labelled are the types that take labels.
var labelled = []string{tInstance, tAddress, tRule, tBucket, tImage}

// mockAddress is the load balancer's address the mocks allocate.
const mockAddress = "192.0.2.10"

// res is one registered resource: its inputs as plain values (secrets
// unwrapped, their top-level keys in secret).
type res struct {
	typ, name string
	in        map[string]any
	secret    map[string]bool
	selfLink  string
}

func (r res) str(key string) string { s, _ := r.in[key].(string); return s }

type mocks struct {
	mu  sync.Mutex
	res []res
}

func selfLink(typ, name string) string {
	kind := typ[strings.LastIndex(typ, ":")+1:]
	return "https://www.googleapis.com/compute/v1/projects/proj/" + strings.ToLower(kind) + "s/" + name
}

func (m *mocks) NewResource(a pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := res{typ: a.TypeToken, name: a.Name, secret: map[string]bool{}, selfLink: selfLink(a.TypeToken, a.Name)}
	r.in = a.Inputs.MapRepl(nil, func(v resource.PropertyValue) (any, bool) {
		if v.IsSecret() {
			return v.SecretValue().Element.Mappable(), true
		}
		return nil, false
	})
	for k, v := range a.Inputs {
		if v.ContainsSecrets() {
			r.secret[string(k)] = true
		}
	}
	m.res = append(m.res, r)
	state := a.Inputs.Copy()
	state["selfLink"] = resource.NewStringProperty(r.selfLink)
	switch a.TypeToken {
	case tAddress:
		state["address"] = resource.NewStringProperty(mockAddress)
	case tInstance:
		// From the name: resources register concurrently, in no set order.
		state["instanceId"] = resource.NewStringProperty(strconv.Itoa(int(crc32.ChecksumIEEE([]byte(a.Name)))))
	}
	return a.Name + "-id", state, nil
}

func (m *mocks) Call(a pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return nil, fmt.Errorf("unexpected call %s", a.Token)
}

// stack is what a program registered and exported.
type stack struct {
	res     []res
	exports map[string]any
}

func run(t *testing.T, prog pulumi.RunFunc) (*stack, error) {
	t.Helper()
	m := &mocks{}
	s := &stack{exports: map[string]any{}}
	var mu sync.Mutex
	var wg sync.WaitGroup
	err := pulumi.RunErr(func(ctx *pulumi.Context) error {
		if err := prog(ctx); err != nil {
			return err
		}
		for k, v := range ctx.GetCurrentExportMap() {
			wg.Add(1)
			pulumi.ToOutput(v).ApplyT(func(x any) any {
				mu.Lock()
				s.exports[k] = x
				mu.Unlock()
				wg.Done()
				return nil
			})
		}
		return nil
	}, pulumi.WithMocks("kubeup", "test", m))
	m.mu.Lock()
	s.res = slices.Clone(m.res)
	m.mu.Unlock()
	if err != nil {
		return s, err
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("exports never resolved")
	}
	return s, nil
}

func mustRun(t *testing.T, prog pulumi.RunFunc) *stack {
	t.Helper()
	s, err := run(t, prog)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *stack) of(typ string) []res {
	var out []res
	for _, r := range s.res {
		if r.typ == typ {
			out = append(out, r)
		}
	}
	return out
}

func (s *stack) get(t *testing.T, typ, name string) res {
	t.Helper()
	for _, r := range s.res {
		if r.typ == typ && r.name == name {
			return r
		}
	}
	t.Fatalf("no %s %s", typ, name)
	return res{}
}

// cluster is a cluster of masters and nodes; the master image is UEFI,
// the node image BIOS.
func cluster(masters, nodes int) cloud.Cluster {
	c := cloud.Cluster{
		Name:     "demo",
		Provider: cloud.GCP,
		Project:  "proj",
		Region:   "us-central1",
		Zone:     "us-central1-a",
		Network: cloud.Network{
			MachineCIDR: "10.0.0.0/24",
			PodCIDR:     "10.244.0.0/16",
		},
		APIAllowedCIDRs: []string{"203.0.113.0/24"},
		Images: map[string]cloud.Image{
			cloud.RoleMaster: {Role: cloud.RoleMaster, Path: "/images/master.tar.gz", SHA256: strings.Repeat("a1", 32), SizeBytes: 3 << 30, UEFI: true,
				ID: "https://www.googleapis.com/compute/v1/projects/proj/global/images/kubeup-master-x"},
			cloud.RoleNode: {Role: cloud.RoleNode, Path: "/images/node.tar.gz", SHA256: strings.Repeat("b2", 32), SizeBytes: 3 << 30,
				ID: "https://www.googleapis.com/compute/v1/projects/proj/global/images/kubeup-node-x"},
		},
		Tags: map[string]string{"team": "infra"},
	}
	add := func(role, typ string, i, host int) {
		name := fmt.Sprintf("%s-%d", role, i)
		ud := fmt.Sprintf("#cloud-config\nhostname: %s\nwrite_files:\n- path: /etc/kubeup/machine\n  content: %q\n", name, strings.Repeat(name+" ", 40))
		c.Machines = append(c.Machines, cloud.Machine{
			Name: name, Role: role, Type: typ, IP: fmt.Sprintf("10.0.0.%d", host+i), DiskGiB: 20, UserData: []byte(ud),
			PodCIDR: fmt.Sprintf("10.244.%d.0/24", host+i),
		})
	}
	for i := range masters {
		add(cloud.RoleMaster, "e2-medium", i, 10)
	}
	for i := range nodes {
		add(cloud.RoleNode, "e2-standard-2", i, 100)
	}
	return c
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func strs(v any) []string {
	var out []string
	for _, x := range asSlice(v) {
		out = append(out, fmt.Sprint(x))
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }
func asMap(v any) map[string]any {
	m, _ := v.(map[string]any)
	return m
}

// allows are a firewall's allow entries as protocol and port ranges.
type fwAllow struct {
	protocol string
	ports    []string
}

func allowsOf(r res) []fwAllow {
	var out []fwAllow
	for _, a := range asSlice(r.in["allows"]) {
		out = append(out, fwAllow{protocol: asMap(a)["protocol"].(string), ports: strs(asMap(a)["ports"])})
	}
	return out
}

// opens reports whether the firewall lists port of proto explicitly (a
// port or a range holding it; protocol "all" is not counted).
func opens(r res, proto string, port int) bool {
	for _, a := range allowsOf(r) {
		if a.protocol != proto {
			continue
		}
		if len(a.ports) == 0 {
			return true
		}
		for _, p := range a.ports {
			lo, hi, found := strings.Cut(p, "-")
			if !found {
				hi = lo
			}
			l, _ := strconv.Atoi(lo)
			h, _ := strconv.Atoi(hi)
			if l <= port && port <= h {
				return true
			}
		}
	}
	return false
}

func tag(role string) string { return "kubeup-demo-" + role }

func TestFirewalls(t *testing.T) {
	for _, tc := range []struct {
		name           string
		masters, nodes int
		ssh            []string
	}{
		{"1+1", 1, 1, nil},
		{"3+2", 3, 2, nil},
		{"3+2 ssh", 3, 2, []string{"198.51.100.0/24", "192.0.2.0/28"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := cluster(tc.masters, tc.nodes)
			c.SSHAllowedCIDRs = tc.ssh
			s := mustRun(t, Program(c))
			fws := s.of(tFirewall)
			if len(fws) == 0 {
				t.Fatal("no firewall")
			}
			var api, etcd, health, ssh int
			for _, f := range fws {
				src := strs(f.in["sourceRanges"])
				for _, r := range src {
					if p, err := netip.ParsePrefix(r); err != nil || p.Bits() == 0 {
						t.Errorf("%s: source range %q", f.name, r)
					}
				}
				if f.str("direction") != "INGRESS" {
					t.Errorf("%s: direction %q", f.name, f.in["direction"])
				}
				if (len(src) == 0) == (len(strs(f.in["sourceTags"])) == 0) {
					t.Errorf("%s: source ranges %v and tags %v: want exactly one", f.name, src, f.in["sourceTags"])
				}
				targets := strs(f.in["targetTags"])
				if len(targets) == 0 {
					t.Errorf("%s: no target tags (every instance)", f.name)
				}
				if slices.Contains(src, "203.0.113.0/24") {
					api++
					if !slices.Equal(targets, []string{tag("master")}) || len(allowsOf(f)) != 1 || !slices.Equal(allowsOf(f)[0].ports, []string{"6443"}) || allowsOf(f)[0].protocol != "tcp" {
						t.Errorf("%s: from the API CIDRs allows %v into %v, want tcp 6443 into masters only", f.name, allowsOf(f), targets)
					}
				}
				if opens(f, "tcp", 2379) || opens(f, "tcp", 2380) {
					etcd++
					if !slices.Equal(targets, []string{tag("master")}) || !slices.Equal(strs(f.in["sourceTags"]), []string{tag("master")}) || len(src) > 0 {
						t.Errorf("%s: etcd from %v %v into %v, want masters into masters", f.name, f.in["sourceTags"], src, targets)
					}
				}
				for _, a := range allowsOf(f) {
					if a.protocol == "all" && !slices.Equal(src, []string{c.Network.PodCIDR}) {
						t.Errorf("%s: all protocols from %v, want only from the pod CIDR", f.name, src)
					}
				}
				if slices.Equal(src, HealthCheckRanges) {
					health++
					if !slices.Equal(targets, []string{tag("master")}) || !opens(f, "tcp", 6443) || len(allowsOf(f)) != 1 || len(allowsOf(f)[0].ports) != 1 {
						t.Errorf("%s: health checks allowed %v into %v, want tcp 6443 into masters", f.name, allowsOf(f), targets)
					}
				}
				if opens(f, "tcp", 22) {
					ssh++
					if len(tc.ssh) == 0 || !slices.Equal(src, tc.ssh) {
						t.Errorf("%s: SSH from %v %v, want only from %v", f.name, src, f.in["sourceTags"], tc.ssh)
					}
				}
			}
			if api == 0 || etcd == 0 || health != 1 {
				t.Errorf("API rules %d, etcd rules %d, health-check rules %d", api, etcd, health)
			}
			if len(tc.ssh) > 0 && ssh != 2 {
				t.Errorf("%d SSH rules, want one per role", ssh)
			}
			for _, i := range s.of(tInstance) {
				nic := asMap(asSlice(i.in["networkInterfaces"])[0])
				if got := len(asSlice(nic["accessConfigs"])); (got > 0) != (len(tc.ssh) > 0) {
					t.Errorf("%s: %d access configs with SSH CIDRs %v", i.name, got, tc.ssh)
				}
			}
		})
	}
}

func TestInstances(t *testing.T) {
	gz := cluster(3, 2)
	gz.Machines[1].UserData = gzipped(t, gz.Machines[1].UserData)
	gz.Machines[4].UserData = gzipped(t, gz.Machines[4].UserData)
	for name, c := range map[string]cloud.Cluster{"1+1": cluster(1, 1), "3+2": cluster(3, 2), "gzip": gz} {
		t.Run(name, func(t *testing.T) {
			s := mustRun(t, Program(c))
			if got := len(s.of(tInstance)); got != len(c.Machines) {
				t.Errorf("%d instances for %d machines", got, len(c.Machines))
			}
			for _, m := range c.Machines {
				i := s.get(t, tInstance, "kubeup-demo-"+m.Name)
				img := c.Images[m.Role]
				nic := asMap(asSlice(i.in["networkInterfaces"])[0])
				if nic["networkIp"] != m.IP || nic["nicType"] != "GVNIC" {
					t.Errorf("%s: interface %v, want %s GVNIC", m.Name, nic, m.IP)
				}
				if got := s.exports[m.Name+"/privateIp"]; got != m.IP {
					t.Errorf("%s/privateIp = %v, want %s", m.Name, got, m.IP)
				}
				if got, _ := s.exports[m.Name+"/id"].(string); got == "" {
					t.Errorf("%s/id not exported", m.Name)
				}
				meta := asMap(i.in["metadata"])
				want := map[string]any{"user-data": string(m.UserData)}
				if bytes.HasPrefix(m.UserData, []byte{0x1f, 0x8b}) {
					want = map[string]any{"user-data": base64.StdEncoding.EncodeToString(m.UserData), "user-data-encoding": "base64"}
					if name != "gzip" {
						t.Fatal("fixture: gzip user-data outside the gzip case")
					}
				}
				if fmt.Sprint(meta) != fmt.Sprint(want) {
					t.Errorf("%s: metadata %v, want %v", m.Name, meta, want)
				}
				if !i.secret["metadata"] {
					t.Errorf("%s: metadata (the machine's keys) not secret", m.Name)
				}
				boot := asMap(i.in["bootDisk"])
				params := asMap(boot["initializeParams"])
				if params["image"] != img.ID || params["size"] != float64(m.DiskGiB) || params["type"] != "pd-balanced" || boot["autoDelete"] != true {
					t.Errorf("%s: boot disk %v, want %s of %d GiB", m.Name, boot, img.ID, m.DiskGiB)
				}
				shielded := asMap(i.in["shieldedInstanceConfig"])
				if img.UEFI {
					if shielded["enableSecureBoot"] != false || shielded["enableVtpm"] != true || shielded["enableIntegrityMonitoring"] != true {
						t.Errorf("%s: shielded VM config %v on a UEFI image", m.Name, shielded)
					}
				} else if i.in["shieldedInstanceConfig"] != nil {
					t.Errorf("%s: shielded VM config %v on a BIOS image", m.Name, shielded)
				}
				for what, l := range map[string]map[string]any{"instance": asMap(i.in["labels"]), "boot disk": asMap(params["labels"])} {
					if l[cloud.ClusterLabel] != "demo" || l[cloud.RoleLabel] != m.Role || l["team"] != "infra" {
						t.Errorf("%s: %s labels %v", m.Name, what, l)
					}
				}
				if !slices.Equal(strs(i.in["tags"]), []string{tag(m.Role)}) {
					t.Errorf("%s: tags %v", m.Name, i.in["tags"])
				}
				if i.in["machineType"] != m.Type || i.in["zone"] != c.Zone || i.in["canIpForward"] != true || i.in["deletionProtection"] != false {
					t.Errorf("%s: type %v zone %v canIpForward %v deletionProtection %v", m.Name, i.in["machineType"], i.in["zone"], i.in["canIpForward"], i.in["deletionProtection"])
				}
			}
		})
	}
}

func TestNamesLabelsProject(t *testing.T) {
	c := cluster(3, 2)
	c.SSHAllowedCIDRs = []string{"198.51.100.0/24"}
	s := mustRun(t, Program(c))
	seen := map[string]bool{}
	for _, r := range s.res {
		seen[r.typ] = true
		if !strings.HasPrefix(r.name, "kubeup-demo-") || r.str("name") != r.name {
			t.Errorf("%s: logical name %q, name %q", r.typ, r.name, r.in["name"])
		}
		if len(r.name) > 63 || !nameRE.MatchString(r.name) {
			t.Errorf("%s %s: not a GCP name", r.typ, r.name)
		}
		if r.str("project") != "proj" {
			t.Errorf("%s %s: project %v", r.typ, r.name, r.in["project"])
		}
		if slices.Contains(labelled, r.typ) && asMap(r.in["labels"])[cloud.ClusterLabel] != "demo" {
			t.Errorf("%s %s: labels %v", r.typ, r.name, r.in["labels"])
		}
	}
	for _, typ := range []string{tNetwork, tSubnet, tFirewall, tAddress, tHealth, tGroup, tBackend, tRule, tInstance} {
		if !seen[typ] {
			t.Errorf("no %s", typ)
		}
	}
	sub := s.get(t, tSubnet, "kubeup-demo-subnet")
	if sub.str("ipCidrRange") != "10.0.0.0/24" || sub.str("region") != "us-central1" || sub.in["privateIpGoogleAccess"] != true {
		t.Errorf("subnet %v", sub.in)
	}
	if net := s.get(t, tNetwork, "kubeup-demo-network"); net.in["autoCreateSubnetworks"] != false {
		t.Errorf("network %v", net.in)
	}
}

func TestLoadBalancer(t *testing.T) {
	c := cluster(3, 2)
	s := mustRun(t, Program(c))
	var masters []string
	for _, i := range s.of(tInstance) {
		if strings.Contains(i.name, "-master-") {
			masters = append(masters, i.selfLink)
		}
	}
	slices.Sort(masters) // resources register concurrently
	group := s.get(t, tGroup, "kubeup-demo-masters")
	if got := strs(group.in["instances"]); len(masters) != 3 || !slices.Equal(got, masters) {
		t.Errorf("instance group holds %v, want the masters %v", got, masters)
	}
	if group.str("zone") != c.Zone {
		t.Errorf("instance group zone %v", group.in["zone"])
	}
	hc := s.get(t, tHealth, "kubeup-demo-api-health")
	if p := asMap(hc.in["tcpHealthCheck"])["port"]; p != 6443.0 {
		t.Errorf("health check port %v", p)
	}
	be := s.get(t, tBackend, "kubeup-demo-api-backend")
	backends := asSlice(be.in["backends"])
	if len(backends) != 1 || asMap(backends[0])["group"] != group.selfLink || be.str("healthChecks") != hc.selfLink ||
		be.str("loadBalancingScheme") != "EXTERNAL" || be.str("protocol") != "TCP" || be.str("region") != c.Region {
		t.Errorf("backend service %v", be.in)
	}
	fr := s.get(t, tRule, "kubeup-demo-api")
	if fr.str("portRange") != "6443" || fr.str("ipAddress") != mockAddress || fr.str("backendService") != be.selfLink ||
		fr.str("loadBalancingScheme") != "EXTERNAL" || fr.str("region") != c.Region {
		t.Errorf("forwarding rule %v", fr.in)
	}
	addr := s.get(t, tAddress, "kubeup-demo-api-address")
	if addr.str("addressType") != "EXTERNAL" || addr.str("region") != c.Region {
		t.Errorf("address %v", addr.in)
	}
	if s.exports["apiEndpoint"] != mockAddress {
		t.Errorf("apiEndpoint = %v", s.exports["apiEndpoint"])
	}
}

func TestExistingNetwork(t *testing.T) {
	c := cluster(1, 1)
	c.Network.VPC, c.Network.Subnet = "shared", "shared-machines"
	s := mustRun(t, Program(c))
	if n := len(s.of(tNetwork)) + len(s.of(tSubnet)); n != 0 {
		t.Errorf("%d networks and subnetworks created in an existing network", n)
	}
	for _, f := range s.of(tFirewall) {
		if f.str("network") != "shared" {
			t.Errorf("%s: network %v", f.name, f.in["network"])
		}
	}
	for _, i := range s.of(tInstance) {
		if nic := asMap(asSlice(i.in["networkInterfaces"])[0]); nic["subnetwork"] != "shared-machines" {
			t.Errorf("%s: subnetwork %v", i.name, nic["subnetwork"])
		}
	}
}

func TestNoMachines(t *testing.T) {
	c := cluster(0, 0)
	s := mustRun(t, Program(c))
	for _, r := range s.res {
		switch r.typ {
		case tNetwork, tSubnet, tFirewall, tAddress:
		default:
			t.Errorf("%s %s created without machines", r.typ, r.name)
		}
	}
	if len(s.of(tAddress)) != 1 || len(s.of(tFirewall)) == 0 || len(s.of(tSubnet)) != 1 {
		t.Errorf("want the address, firewalls and the network: %d resources", len(s.res))
	}
	if s.exports["apiEndpoint"] != mockAddress || len(s.exports) != 1 {
		t.Errorf("exports %v", s.exports)
	}
}

func TestInvalid(t *testing.T) {
	for name, edit := range map[string]func(*cloud.Cluster){
		"no API CIDRs":    func(c *cloud.Cluster) { c.APIAllowedCIDRs = nil },
		"API /0":          func(c *cloud.Cluster) { c.APIAllowedCIDRs = []string{"0.0.0.0/0"} },
		"SSH ::/0":        func(c *cloud.Cluster) { c.SSHAllowedCIDRs = []string{"::/0"} },
		"pod CIDR /0":     func(c *cloud.Cluster) { c.Network.PodCIDR = "0.0.0.0/0" },
		"no project":      func(c *cloud.Cluster) { c.Project = "" },
		"no zone":         func(c *cloud.Cluster) { c.Zone = "" },
		"zone elsewhere":  func(c *cloud.Cluster) { c.Zone = "europe-west1-b" },
		"long name":       func(c *cloud.Cluster) { c.Name = strings.Repeat("x", 50) },
		"upper-case name": func(c *cloud.Cluster) { c.Name = "Demo" },
		"IP outside":      func(c *cloud.Cluster) { c.Machines[1].IP = "10.1.0.5" },
		"no image ID":     func(c *cloud.Cluster) { img := c.Images["node"]; img.ID = ""; c.Images["node"] = img },
		"small disk":      func(c *cloud.Cluster) { c.Machines[0].DiskGiB = 2 },
		"big user-data":   func(c *cloud.Cluster) { c.Machines[0].UserData = bytes.Repeat([]byte("x"), MaxUserData+1) },
		"aws":             func(c *cloud.Cluster) { c.Provider = cloud.AWS },
	} {
		t.Run(name, func(t *testing.T) {
			c := cluster(1, 1)
			edit(&c)
			s, err := run(t, Program(c))
			if err == nil {
				t.Fatal("no error")
			}
			if len(s.res) != 0 {
				t.Errorf("%d resources registered before the error %v", len(s.res), err)
			}
		})
	}
	s, err := run(t, ImageProgram("proj", "", nil))
	if err == nil || len(s.res) != 0 {
		t.Errorf("images without region: %v, %d resources", err, len(s.res))
	}
}

func images(adoptNode string) []ImageSpec {
	c := cluster(0, 0)
	return []ImageSpec{{Image: c.Images[cloud.RoleMaster]}, {Image: c.Images[cloud.RoleNode], Adopt: adoptNode}}
}

func TestImageProgram(t *testing.T) {
	s := mustRun(t, ImageProgram("proj", "us-central1", images("")))
	buckets := s.of(tBucket)
	if len(buckets) != 1 {
		t.Fatalf("%d buckets", len(buckets))
	}
	b := buckets[0]
	bucketName := BucketName("proj", images(""))
	if b.str("name") != bucketName || b.in["uniformBucketLevelAccess"] != true || b.str("publicAccessPrevention") != "enforced" ||
		b.str("location") != "US-CENTRAL1" || asMap(b.in["labels"])[BucketLabel] != "true" || b.str("project") != "proj" {
		t.Errorf("bucket %v", b.in)
	}
	for _, spec := range images("") {
		img := spec.Image
		obj := s.get(t, tObject, ObjectName(img))
		if obj.str("bucket") != bucketName || obj.str("name") != img.Role+"-"+img.SHA256+".tar.gz" {
			t.Errorf("object %v", obj.in)
		}
		if a, ok := obj.in["source"].(*asset.Asset); !ok || a.Path != img.Path {
			t.Errorf("object source %v, want %s", obj.in["source"], img.Path)
		}
		gi := s.get(t, tImage, img.ImageName())
		var features []string
		for _, f := range asSlice(gi.in["guestOsFeatures"]) {
			features = append(features, asMap(f)["type"].(string))
		}
		sort.Strings(features)
		want := []string{"GVNIC", "VIRTIO_SCSI_MULTIQUEUE"}
		if img.UEFI {
			want = []string{"GVNIC", "UEFI_COMPATIBLE", "VIRTIO_SCSI_MULTIQUEUE"}
		}
		if !slices.Equal(features, want) {
			t.Errorf("%s: guest OS features %v, want %v", gi.name, features, want)
		}
		l := asMap(gi.in["labels"])
		if gi.str("name") != img.ImageName() || gi.str("family") != "kubeup-"+img.Role || l[cloud.ImageLabel] != img.ShortDigest() || l[cloud.RoleLabel] != img.Role || len(l) != 2 {
			t.Errorf("%s: name %v family %v labels %v", gi.name, gi.in["name"], gi.in["family"], l)
		}
		if src := asMap(gi.in["rawDisk"])["source"]; src != "https://storage.googleapis.com/"+bucketName+"/"+ObjectName(img) {
			t.Errorf("%s: raw disk %v", gi.name, src)
		}
		if s.exports["image/"+img.Role] != gi.selfLink {
			t.Errorf("image/%s = %v, want %s", img.Role, s.exports["image/"+img.Role], gi.selfLink)
		}
	}

	const adopted = "https://www.googleapis.com/compute/v1/projects/proj/global/images/kubeup-node-b2b2b2b2b2b2b2b2b2b2"
	s = mustRun(t, ImageProgram("proj", "us-central1", images(adopted)))
	for _, r := range s.res {
		if strings.Contains(r.name, "node") {
			t.Errorf("%s %s created for an adopted image", r.typ, r.name)
		}
	}
	if len(s.of(tImage)) != 1 || len(s.of(tObject)) != 1 {
		t.Errorf("%d images and %d objects, want the master's", len(s.of(tImage)), len(s.of(tObject)))
	}
	if s.exports["image/node"] != adopted {
		t.Errorf("image/node = %v, want %s", s.exports["image/node"], adopted)
	}
	one := []ImageSpec{{Image: cloud.Image{Role: "master", SHA256: strings.Repeat("a", 64)}}}
	other := []ImageSpec{{Image: cloud.Image{Role: "master", SHA256: strings.Repeat("b", 64)}}}
	if n := BucketName(strings.Repeat("p", 30), one); len(n) > 63 || !strings.HasPrefix(n, "kubeup-images-") || n == BucketName(strings.Repeat("p", 30), other) || n != BucketName(strings.Repeat("p", 30), one) {
		t.Errorf("bucket name %q: per project and digests, stable, at most 63 characters", n)
	}
}

// summary is a resource's line in a golden file: its type, name and a few
// key properties.
func summary(r res) string {
	kv := []string{r.typ, r.name}
	add := func(k string, v any) {
		switch v := v.(type) {
		case nil:
			return
		case []any:
			v2 := strs(v)
			if len(v2) == 0 {
				return
			}
			kv = append(kv, k+"="+strings.Join(v2, ","))
		default:
			kv = append(kv, fmt.Sprintf("%s=%v", k, v))
		}
	}
	labels := func(v any) {
		m := asMap(v)
		var l []string
		for _, k := range slices.Sorted(maps.Keys(m)) {
			l = append(l, k+":"+fmt.Sprint(m[k]))
		}
		if len(l) > 0 {
			kv = append(kv, "labels="+strings.Join(l, ","))
		}
	}
	in := r.in
	switch r.typ {
	case tNetwork:
		add("autoCreateSubnetworks", in["autoCreateSubnetworks"])
	case tSubnet:
		add("region", in["region"])
		add("ipCidrRange", in["ipCidrRange"])
	case tFirewall:
		var a []string
		for _, x := range allowsOf(r) {
			a = append(a, strings.Join(append([]string{x.protocol}, x.ports...), ":"))
		}
		kv = append(kv, "allow="+strings.Join(a, ","))
		add("sourceRanges", in["sourceRanges"])
		add("sourceTags", in["sourceTags"])
		add("targetTags", in["targetTags"])
	case tAddress:
		add("region", in["region"])
		add("addressType", in["addressType"])
		labels(in["labels"])
	case tHealth:
		add("tcpPort", asMap(in["tcpHealthCheck"])["port"])
	case tGroup:
		add("zone", in["zone"])
		add("instances", in["instances"])
	case tBackend:
		add("scheme", in["loadBalancingScheme"])
		add("protocol", in["protocol"])
		add("group", asMap(asSlice(in["backends"])[0])["group"])
		add("healthChecks", in["healthChecks"])
	case tRule:
		add("scheme", in["loadBalancingScheme"])
		add("portRange", in["portRange"])
		add("ipAddress", in["ipAddress"])
		add("backendService", in["backendService"])
		labels(in["labels"])
	case tInstance:
		nic := asMap(asSlice(in["networkInterfaces"])[0])
		params := asMap(asMap(in["bootDisk"])["initializeParams"])
		add("machineType", in["machineType"])
		add("zone", in["zone"])
		add("networkIp", nic["networkIp"])
		add("accessConfigs", len(asSlice(nic["accessConfigs"])))
		add("image", params["image"])
		add("diskGiB", params["size"])
		add("tags", in["tags"])
		add("shielded", in["shieldedInstanceConfig"] != nil)
		add("userDataBytes", len(asMap(in["metadata"])["user-data"].(string)))
		labels(in["labels"])
	case tRoute:
		add("network", in["network"])
		add("destRange", in["destRange"])
		add("nextHopInstance", in["nextHopInstance"])
		add("nextHopInstanceZone", in["nextHopInstanceZone"])
	case tBucket:
		add("location", in["location"])
		add("uniformBucketLevelAccess", in["uniformBucketLevelAccess"])
		add("publicAccessPrevention", in["publicAccessPrevention"])
		labels(in["labels"])
	case tObject:
		add("bucket", in["bucket"])
		if a, ok := in["source"].(*asset.Asset); ok {
			add("source", a.Path)
		}
	case tImage:
		var f []string
		for _, x := range asSlice(in["guestOsFeatures"]) {
			f = append(f, asMap(x)["type"].(string))
		}
		kv = append(kv, "guestOsFeatures="+strings.Join(f, ","))
		add("family", in["family"])
		add("rawDisk", asMap(in["rawDisk"])["source"])
		labels(in["labels"])
	}
	return strings.Join(kv, " ")
}

// goldenText is a stack as a golden file: its resources sorted by type
// then name, then its exports.
func goldenText(s *stack) []byte {
	rs := slices.Clone(s.res)
	slices.SortFunc(rs, func(a, b res) int {
		if c := strings.Compare(a.typ, b.typ); c != 0 {
			return c
		}
		return strings.Compare(a.name, b.name)
	})
	var b strings.Builder
	for _, r := range rs {
		b.WriteString(summary(r) + "\n")
	}
	keys := make([]string, 0, len(s.exports))
	for k := range s.exports {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "export %s=%v\n", k, s.exports[k])
	}
	return []byte(b.String())
}

func TestGolden(t *testing.T) {
	s := mustRun(t, Program(cluster(3, 2)))
	golden.Assert(t, "cluster-3+2", goldenText(s))
	s = mustRun(t, ImageProgram("proj", "us-central1", images("")))
	golden.Assert(t, "images", goldenText(s))
}

// Each machine's pod range is routed to it (a GCP network delivers nothing
// to addresses no route names), also in an existing network.
func TestPodRoutes(t *testing.T) {
	for _, existing := range []bool{false, true} {
		c := cluster(3, 2)
		if existing {
			c.Network.VPC, c.Network.Subnet = "shared", "shared-sub"
		}
		s := mustRun(t, Program(c))
		network := "shared"
		if !existing {
			network = s.get(t, tNetwork, "kubeup-demo-network").selfLink
		}
		if got := len(s.of(tRoute)); got != len(c.Machines) {
			t.Errorf("existing=%v: %d routes, want one per machine", existing, got)
		}
		for _, m := range c.Machines {
			r := s.get(t, tRoute, "kubeup-demo-pods-"+m.Name)
			inst := s.get(t, tInstance, "kubeup-demo-"+m.Name)
			if r.in["destRange"] != m.PodCIDR || r.in["nextHopInstance"] != inst.selfLink || r.in["nextHopInstanceZone"] != c.Zone || r.in["network"] != network {
				t.Errorf("existing=%v %s: route %v, want %s to %s on %s", existing, m.Name, r.in, m.PodCIDR, inst.selfLink, network)
			}
		}
	}
}
