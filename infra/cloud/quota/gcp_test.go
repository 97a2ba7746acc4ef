package quota

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"kubeup.dev/kubeup/infra/cloud"
)

// fakeGCP serves Compute Engine v1's regions.get for project p, region
// us-central1, and instances.list in zone us-central1-a.
type fakeGCP struct {
	quotas        []gcpQuota
	instances     [][]gcpInstance // pages chained by nextPageToken
	denyRegion    bool
	denyInstances bool

	mu       sync.Mutex
	requests []string // "path filter pageToken"
}

func (f *fakeGCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	f.requests = append(f.requests, strings.TrimSpace(r.URL.Path+" "+q.Get("filter")+" "+q.Get("pageToken")))
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	deny := func(perm, res string) {
		w.WriteHeader(http.StatusForbidden)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"code": 403, "message": "Required '" + perm + "' permission for '" + res + "'",
			"errors": []map[string]string{{"message": "Required '" + perm + "' permission for '" + res + "'", "domain": "global", "reason": "forbidden"}},
		}})
	}
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/compute/v1/projects/p/regions/us-central1":
		if f.denyRegion {
			deny("compute.regions.get", "projects/p/regions/us-central1")
			return
		}
		json.NewEncoder(w).Encode(map[string]any{
			"kind": "compute#region", "id": "1000", "name": "us-central1", "status": "UP",
			"selfLink": "https://www.googleapis.com/compute/v1/projects/p/regions/us-central1",
			"quotas":   f.quotas,
		})
	case r.Method == http.MethodGet && r.URL.Path == "/compute/v1/projects/p/zones/us-central1-a/instances":
		if f.denyInstances {
			deny("compute.instances.list", "projects/p/zones/us-central1-a")
			return
		}
		out := map[string]any{"kind": "compute#instanceList"}
		page := 0
		if tok := q.Get("pageToken"); tok != "" {
			page = int(tok[1] - '0')
		}
		if page < len(f.instances) {
			out["items"] = f.instances[page]
		}
		if page+1 < len(f.instances) {
			out["nextPageToken"] = "t" + string(rune('0'+page+1))
		}
		json.NewEncoder(w).Encode(out)
	default:
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":404,"message":"The resource '` + r.URL.Path + `' was not found"}}`))
	}
}

func gcpVM(name, typ, status, cluster string) gcpInstance {
	return gcpInstance{
		Name: name, Status: status, Labels: map[string]string{cloud.ClusterLabel: cluster},
		MachineType: "https://www.googleapis.com/compute/v1/projects/p/zones/us-central1-a/machineTypes/" + typ,
	}
}

func gcpCluster(masters int, masterType string, nodes int, nodeType string) cloud.Cluster {
	c := cluster(cloud.GCP, masters, masterType, nodes, nodeType)
	c.Project, c.Region, c.Zone = "p", "us-central1", "us-central1-a"
	return c
}

func checkGCP(t *testing.T, f *fakeGCP, c cloud.Cluster) error {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	err := NewGCP("p", "us-central1", srv.Client(), srv.URL+"/compute/v1").Check(context.Background(), c)
	if err != nil {
		t.Log(err)
	}
	return err
}

// ownVMs are the cluster's machines from an earlier `kubeup up`: 4 vCPUs
// of CPUS running (one on page 2), a stopped one and one of another
// cluster (a filter the server ignored), neither credited.
var ownVMs = [][]gcpInstance{
	{gcpVM("kubeup-c-master-0", "e2-medium", "RUNNING", "c"), gcpVM("kubeup-c-node-1", "e2-standard-4", "TERMINATED", "c")},
	{gcpVM("kubeup-c-node-0", "e2-standard-2", "RUNNING", "c"), gcpVM("kubeup-d-node-0", "e2-standard-4", "RUNNING", "d")},
}

const wantFilter = `labels.kubeup-cluster="c"`

func TestGCPEnough(t *testing.T) {
	// CPUS: 10 in use, 4 of them the cluster's: 6 + 4 needed = the limit
	// 10. N2_CPUS has no room but e2 does not count against it.
	f := &fakeGCP{
		quotas:    []gcpQuota{{"N2_CPUS", 0, 0}, {"CPUS", 10, 10}, {"DISKS_TOTAL_GB", 4096, 100}},
		instances: ownVMs,
	}
	if err := checkGCP(t, f, gcpCluster(1, "e2-medium", 1, "e2-standard-2")); err != nil {
		t.Fatalf("Check: %v", err)
	}
	want := []string{
		"/compute/v1/projects/p/regions/us-central1",
		"/compute/v1/projects/p/zones/us-central1-a/instances " + wantFilter,
		"/compute/v1/projects/p/zones/us-central1-a/instances " + wantFilter + " t1",
	}
	if !slices.Equal(f.requests, want) {
		t.Errorf("requests:\n got %q\nwant %q", f.requests, want)
	}
}

func TestGCPShort(t *testing.T) {
	// 3 × n2-standard-4 = 12 N2_CPUS, 2 × e2-standard-4 = 8 CPUS.
	f := &fakeGCP{quotas: []gcpQuota{{"CPUS", 24, 16}, {"N2_CPUS", 16, 6}}}
	err := checkGCP(t, f, gcpCluster(3, "n2-standard-4", 2, "e2-standard-4"))
	want := `gcp: the cluster needs 12 vCPUs of quota "N2_CPUS" in us-central1; the limit is 16 and 6 are in use: ` +
		`request an increase in the console (https://console.cloud.google.com/iam-admin/quotas?project=p) or use smaller machine types`
	if err == nil || err.Error() != want {
		t.Fatalf("Check:\n got %v\nwant %s", err, want)
	}
	if errors.Is(err, ErrUnknown) {
		t.Error("a shortfall is ErrUnknown")
	}

	// Both short, each named; the stopped machine (4) is not credited:
	// 10 - 4 = 6 in use + 4 needed > 9.
	f = &fakeGCP{quotas: []gcpQuota{{"CPUS", 9, 10}, {"N2_CPUS", 8, 0}}, instances: ownVMs}
	err = checkGCP(t, f, gcpCluster(3, "n2-standard-4", 1, "e2-standard-4"))
	if err == nil || !strings.Contains(err.Error(), `needs 12 vCPUs of quota "N2_CPUS" in us-central1; the limit is 8 and 0 are in use`) ||
		!strings.Contains(err.Error(), `needs 4 vCPUs of quota "CPUS" in us-central1; the limit is 9 and 6 are in use by other machines (not counting the cluster's own 4)`) {
		t.Fatalf("Check: %v", err)
	}
}

func TestGCPUnknown(t *testing.T) {
	// No C3_CPUS in the region.
	f := &fakeGCP{quotas: []gcpQuota{{"CPUS", 24, 0}, {"N2_CPUS", 24, 0}}}
	err := checkGCP(t, f, gcpCluster(1, "c3-standard-4", 0, ""))
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Check: %v, want ErrUnknown", err)
	}
	for _, s := range []string{`gcp: quotas unknown: region us-central1 of project p reports no quota "C3_CPUS" (for c3 machines): see the console (https://console.cloud.google.com/iam-admin/quotas?project=p)`, "--skip-quota-check"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q", s)
		}
	}

	f = &fakeGCP{quotas: []gcpQuota{{"CPUS", 24, 0}}, denyRegion: true}
	err = checkGCP(t, f, gcpCluster(1, "e2-medium", 1, "e2-standard-2"))
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Check: %v, want ErrUnknown", err)
	}
	for _, s := range []string{"gcp: quotas unknown: compute regions.get projects/p/regions/us-central1 failed: 403 Forbidden",
		"Required 'compute.regions.get' permission", "the permissions compute.regions.get and compute.instances.list", "--skip-quota-check"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q", s)
		}
	}

	f = &fakeGCP{quotas: []gcpQuota{{"CPUS", 24, 0}}, denyInstances: true}
	err = checkGCP(t, f, gcpCluster(1, "e2-medium", 1, "e2-standard-2"))
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "compute instances.list projects/p/zones/us-central1-a/instances failed: 403 Forbidden") {
		t.Fatalf("Check: %v", err)
	}
}

func TestGCPNothingToCheck(t *testing.T) {
	f := &fakeGCP{}
	if err := checkGCP(t, f, gcpCluster(0, "", 0, "")); err != nil {
		t.Errorf("no machines: %v", err)
	}
	if err := checkGCP(t, f, cluster(cloud.AWS, 1, "t3.medium", 0, "")); err == nil {
		t.Error("an AWS cluster: no error")
	}
	if len(f.requests) != 0 {
		t.Errorf("requests: %q", f.requests)
	}
	// The project and region default to the cluster's.
	f = &fakeGCP{quotas: []gcpQuota{{"CPUS", 4, 0}}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	if err := NewGCP("", "", srv.Client(), srv.URL+"/compute/v1/").Check(context.Background(), gcpCluster(1, "e2-medium", 1, "e2-standard-2")); err != nil ||
		len(f.requests) != 2 || f.requests[0] != "/compute/v1/projects/p/regions/us-central1" {
		t.Errorf("cluster's project and region: %v, requests %q", err, f.requests)
	}
	// The endpoint gets its slash.
	if g := NewGCP("", "", nil, "http://x/compute/v1"); g.endpoint != "http://x/compute/v1/" || g.client != http.DefaultClient {
		t.Errorf("NewGCP: %+v", g)
	}
	if g := NewGCP("", "", nil, ""); !strings.HasPrefix(g.endpoint, "https://compute.googleapis.com/") {
		t.Errorf("default endpoint %q", g.endpoint)
	}
}
