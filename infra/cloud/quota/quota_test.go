package quota

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"kubeup.dev/kubeup/infra/cloud"
)

// cluster is a cluster "c" of masters then nodes of the given types.
func cluster(provider string, masters int, masterType string, nodes int, nodeType string) cloud.Cluster {
	c := cloud.Cluster{Name: "c", Provider: provider}
	for i := range masters {
		c.Machines = append(c.Machines, cloud.Machine{Name: fmt.Sprintf("kubeup-c-master-%d", i), Role: cloud.RoleMaster, Type: masterType})
	}
	for i := range nodes {
		c.Machines = append(c.Machines, cloud.Machine{Name: fmt.Sprintf("kubeup-c-node-%d", i), Role: cloud.RoleNode, Type: nodeType})
	}
	return c
}

func TestNeeds(t *testing.T) {
	for _, tc := range []struct {
		name string
		c    cloud.Cluster
		want []Need
	}{
		// t3.medium 2 + t3.large 2.
		{"aws 1+1", cluster(cloud.AWS, 1, "t3.medium", 1, "t3.large"), []Need{{"standard", "L-1216C47A", 4}}},
		// 3 × m6i.xlarge 4 + 2 × r6i.large 2: one quota for both families.
		{"aws 3+2", cluster(cloud.AWS, 3, "m6i.xlarge", 2, "r6i.large"), []Need{{"standard", "L-1216C47A", 16}}},
		// e2-medium 2 + e2-standard-2 2.
		{"gcp 1+1", cluster(cloud.GCP, 1, "e2-medium", 1, "e2-standard-2"), []Need{{"e2", "CPUS", 4}}},
		// 3 × n2-standard-4 4 + 2 × e2-standard-4 4: n2 does not count
		// against CPUS.
		{"gcp 3+2", cluster(cloud.GCP, 3, "n2-standard-4", 2, "e2-standard-4"), []Need{{"n2", "N2_CPUS", 12}, {"e2", "CPUS", 8}}},
		// 3 × c3-standard-4 4 + 2 × t2d-standard-2 2.
		{"gcp c3+t2d", cluster(cloud.GCP, 3, "c3-standard-4", 2, "t2d-standard-2"), []Need{{"c3", "C3_CPUS", 12}, {"t2d", "T2D_CPUS", 4}}},
		{"no machines", cluster(cloud.GCP, 0, "", 0, ""), nil},
	} {
		got, err := Needs(tc.c)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("%s: Needs = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

// Every catalogue type has a quota: a type added without one fails here.
func TestNeedsCatalogue(t *testing.T) {
	want := map[string]string{
		"e2-medium": "CPUS", "e2-standard-2": "CPUS", "e2-standard-4": "CPUS",
		"n2-standard-2": "N2_CPUS", "n2-standard-4": "N2_CPUS", "n2d-standard-2": "N2D_CPUS",
		"c3-standard-4": "C3_CPUS", "t2d-standard-2": "T2D_CPUS",
	}
	for _, p := range []string{cloud.AWS, cloud.GCP} {
		for _, typ := range cloud.TypeNames(p) {
			mt, _ := cloud.LookupType(p, typ)
			got, err := Needs(cluster(p, 2, typ, 0, ""))
			metric := want[typ]
			if p == cloud.AWS {
				metric = "L-1216C47A"
			}
			if err != nil || len(got) != 1 || got[0].Metric != metric || got[0].VCPUs != 2*mt.VCPUs {
				t.Errorf("%s %s: Needs = %v, %v; want %s × %d", p, typ, got, err, metric, 2*mt.VCPUs)
			}
		}
	}
}

func TestNeedsErrors(t *testing.T) {
	for _, tc := range []struct {
		c    cloud.Cluster
		want string
	}{
		{cluster(cloud.AWS, 1, "t3.nano", 0, ""), `"t3.nano" is not a machine type kubeup knows`},
		{cluster(cloud.GCP, 1, "t3.medium", 0, ""), `"t3.medium" is not a machine type kubeup knows for gcp`},
		{cluster("azure", 1, "t3.medium", 0, ""), `unknown provider "azure"`},
	} {
		if _, err := Needs(tc.c); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "kubeup-c-master-0") {
			t.Errorf("Needs(%s %s): %v, want %q naming the machine", tc.c.Provider, tc.c.Machines[0].Type, err, tc.want)
		}
	}
	if _, _, err := quotaOf(cloud.GCP, "n1-standard-1"); err == nil {
		t.Error("quotaOf(n1-standard-1): no error")
	}
	if _, _, err := quotaOf(cloud.AWS, "g5.xlarge"); err == nil {
		t.Error("quotaOf(g5.xlarge): no error")
	}
}

func TestAWSStandard(t *testing.T) {
	for _, typ := range []string{"t3.medium", "m7i-flex.large", "c7gn.xlarge", "r7iz.large", "i4i.large", "im4gn.large", "is4gen.large", "d3en.xlarge", "h1.2xlarge", "z1d.large", "a1.medium"} {
		if !awsStandard(typ) {
			t.Errorf("%s is standard", typ)
		}
	}
	for _, typ := range []string{"inf2.xlarge", "trn1.2xlarge", "dl1.24xlarge", "hpc7g.4xlarge", "mac2.metal", "u-6tb1.metal", "u7i-12tb.224xlarge", "x2idn.large", "g5.xlarge", "p4d.24xlarge", "f1.2xlarge", "vt1.3xlarge", "", "t"} {
		if awsStandard(typ) {
			t.Errorf("%s is not standard", typ)
		}
	}
}

func TestInUse(t *testing.T) {
	for _, tc := range []struct {
		others, own int
		want        string
	}{
		{2, 0, "2 are in use"},
		{1, 0, "1 is in use"},
		{0, 4, "0 are in use by other machines (not counting the cluster's own 4)"},
	} {
		if got := inUse(tc.others, tc.own); got != tc.want {
			t.Errorf("inUse(%d, %d) = %q, want %q", tc.others, tc.own, got, tc.want)
		}
	}
}
