package cloud

import (
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/pulumi"
)

// Planned is one resource a program would create.
type Planned struct {
	Type, Name string
	Inputs     resource.PropertyMap
}

// Plan runs a program offline, under Pulumi's mock engine (no provider
// plugin, no credentials, no cloud): every resource it would create on an
// empty stack, in registration order. Outputs a program reads come back as
// its inputs, ids and names as "<name>-id"; invokes (look-ups) fail, as on
// an account where nothing was published.
func Plan(program pulumi.RunFunc, stack string) ([]Planned, error) {
	m := &planMocks{}
	if err := pulumi.RunErr(program, pulumi.WithMocks("kubeup", stack, m)); err != nil {
		return nil, err
	}
	return m.planned, nil
}

type planMocks struct {
	mu      sync.Mutex
	planned []Planned
}

func (m *planMocks) NewResource(args pulumi.MockResourceArgs) (string, resource.PropertyMap, error) {
	m.mu.Lock()
	m.planned = append(m.planned, Planned{Type: args.TypeToken, Name: args.Name, Inputs: args.Inputs})
	m.mu.Unlock()
	out := args.Inputs.Copy()
	id := args.Name + "-id"
	for _, k := range []string{"arn", "selfLink", "dnsName", "address", "name", "bucket"} {
		if _, ok := out[resource.PropertyKey(k)]; !ok {
			out[resource.PropertyKey(k)] = resource.NewStringProperty(id)
		}
	}
	return id, out, nil
}

func (m *planMocks) Call(args pulumi.MockCallArgs) (resource.PropertyMap, error) {
	return nil, fmt.Errorf("%s: no results (offline plan)", args.Token)
}

// Summary counts planned resources by type, one line per type, sorted.
func Summary(planned []Planned) string {
	count := map[string][]string{}
	for _, p := range planned {
		count[p.Type] = append(count[p.Type], p.Name)
	}
	types := make([]string, 0, len(count))
	for t := range count {
		types = append(types, t)
	}
	sort.Strings(types)
	var b strings.Builder
	for _, t := range types {
		names := count[t]
		sort.Strings(names)
		list := strings.Join(names, ", ")
		if len(list) > 50 {
			list = list[:47] + "..."
		}
		// "aws:ec2/instance:Instance" reads as ec2/instance.
		short := t
		if parts := strings.Split(t, ":"); len(parts) == 3 {
			short = parts[0] + ":" + parts[1]
		}
		fmt.Fprintf(&b, "  %3d  %-36s %s\n", len(names), short, list)
	}
	return b.String()
}
