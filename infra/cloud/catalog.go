package cloud

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// MachineType is one instance or machine type kubeup knows: its size and
// its on-demand Linux list price per hour in USD (AWS us-east-1, GCP
// us-central1, December 2026; other regions cost up to about 30 % more).
// A config may only name these: a typo fails before anything is created,
// and --preview can price the cluster.
type MachineType struct {
	Name       string
	VCPUs      int
	MemoryGiB  float64
	USDPerHour float64
}

// Prices of what is not a machine, per hour in USD.
type Prices struct {
	// LoadBalancer is the API load balancer (AWS NLB hour; GCP forwarding
	// rule), without traffic.
	LoadBalancer float64
	// DiskGiBMonth is a root volume's GiB-month (gp3; pd-balanced).
	DiskGiBMonth float64
	// PublicIPv4 is one public address's hour (AWS charges for every
	// public IPv4 address; GCP for an in-use external one).
	PublicIPv4 float64
}

var catalog = map[string][]MachineType{
	AWS: {
		{"t3.medium", 2, 4, 0.0416},
		{"t3.large", 2, 8, 0.0832},
		{"t3.xlarge", 4, 16, 0.1664},
		{"m6i.large", 2, 8, 0.096},
		{"m6i.xlarge", 4, 16, 0.192},
		{"m7i.large", 2, 8, 0.1008},
		{"m7i.xlarge", 4, 16, 0.2016},
		{"c6i.large", 2, 4, 0.085},
		{"c6i.xlarge", 4, 8, 0.17},
		{"r6i.large", 2, 16, 0.126},
	},
	GCP: {
		{"e2-medium", 2, 4, 0.033503},
		{"e2-standard-2", 2, 8, 0.067006},
		{"e2-standard-4", 4, 16, 0.134012},
		{"n2-standard-2", 2, 8, 0.097118},
		{"n2-standard-4", 4, 16, 0.194236},
		{"n2d-standard-2", 2, 8, 0.084492},
		{"c3-standard-4", 4, 16, 0.201608},
		{"t2d-standard-2", 2, 8, 0.084492},
	},
}

var prices = map[string]Prices{
	AWS: {LoadBalancer: 0.0225, DiskGiBMonth: 0.08, PublicIPv4: 0.005},
	GCP: {LoadBalancer: 0.025, DiskGiBMonth: 0.10, PublicIPv4: 0.005},
}

// Default machine types: the smallest that run the role with room (the
// control plane wants 4 GiB; nodes run the addons).
var defaultTypes = map[string]map[string]string{
	AWS: {RoleMaster: "t3.medium", RoleNode: "t3.large"},
	GCP: {RoleMaster: "e2-medium", RoleNode: "e2-standard-2"},
}

// DefaultType is a role's default machine type on a provider.
func DefaultType(provider, role string) string { return defaultTypes[provider][role] }

// LookupType finds a machine type of a provider; the error lists the
// known ones.
func LookupType(provider, name string) (MachineType, error) {
	types, ok := catalog[provider]
	if !ok {
		return MachineType{}, fmt.Errorf("unknown provider %q", provider)
	}
	i := slices.IndexFunc(types, func(t MachineType) bool { return t.Name == name })
	if i < 0 {
		return MachineType{}, fmt.Errorf("%q is not a machine type kubeup knows for %s; use one of %s", name, provider, strings.Join(TypeNames(provider), ", "))
	}
	return types[i], nil
}

// TypeNames are the known machine types of a provider, sorted.
func TypeNames(provider string) []string {
	var out []string
	for _, t := range catalog[provider] {
		out = append(out, t.Name)
	}
	sort.Strings(out)
	return out
}

// Cost is an hourly estimate, item by item.
type Cost struct {
	Items []CostItem
	// USDPerHour is the sum of the items.
	USDPerHour float64
}

// CostItem is one line of an estimate.
type CostItem struct {
	What       string // "3 × t3.medium (master)"
	USDPerHour float64
}

const hoursPerMonth = 730

// Estimate prices a cluster per hour: its machines, their root volumes,
// the API load balancer and public addresses (the load balancer's, and
// the machines' when SSH is open). Traffic and the images' storage are not
// in it.
func Estimate(c Cluster) (Cost, error) {
	p, ok := prices[c.Provider]
	if !ok {
		return Cost{}, fmt.Errorf("unknown provider %q", c.Provider)
	}
	type key struct{ role, typ string }
	count := map[key]int{}
	var order []key
	disk := 0
	for _, m := range c.Machines {
		k := key{m.Role, m.Type}
		if count[k] == 0 {
			order = append(order, k)
		}
		count[k]++
		disk += m.DiskGiB
	}
	var cost Cost
	add := func(what string, usd float64) {
		cost.Items = append(cost.Items, CostItem{What: what, USDPerHour: usd})
		cost.USDPerHour += usd
	}
	for _, k := range order {
		t, err := LookupType(c.Provider, k.typ)
		if err != nil {
			return Cost{}, err
		}
		add(fmt.Sprintf("%d × %s (%s, %d vCPU, %g GiB)", count[k], t.Name, k.role, t.VCPUs, t.MemoryGiB), float64(count[k])*t.USDPerHour)
	}
	if disk > 0 {
		add(fmt.Sprintf("%d GiB of root volumes", disk), float64(disk)*p.DiskGiBMonth/hoursPerMonth)
	}
	add("API load balancer", p.LoadBalancer)
	ips := 1
	if len(c.SSHAllowedCIDRs) > 0 {
		ips += len(c.Machines)
	}
	add(fmt.Sprintf("%d public IPv4 address(es)", ips), float64(ips)*p.PublicIPv4)
	return cost, nil
}

// String prints an estimate as lines for people.
func (c Cost) String() string {
	var b strings.Builder
	for _, it := range c.Items {
		fmt.Fprintf(&b, "  %-48s $%.4f/h\n", it.What, it.USDPerHour)
	}
	fmt.Fprintf(&b, "  %-48s $%.4f/h (about $%.0f a month)\n", "total (list prices, without traffic)", c.USDPerHour, c.USDPerHour*hoursPerMonth)
	return b.String()
}
