package leftovers

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// gcpCollection is what the fake serves at one list URL for cluster "c".
type gcpCollection struct {
	filter string          // the filter that selects cluster "c"
	pages  [][]gcpFakeItem // pages chained by nextPageToken "t<n>"
}

type gcpFakeItem struct {
	Name   string
	Labels map[string]string
	Status string // instances'
}

// fakeGCP serves Compute Engine v1 list URLs under /compute/v1/.
type fakeGCP struct {
	collections map[string]gcpCollection // by path under projects/p/
	mu          sync.Mutex
	requests    []string // "path filter pageToken"
}

func (f *fakeGCP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	path, ok := strings.CutPrefix(r.URL.Path, "/compute/v1/projects/p/")
	c, known := f.collections[path]
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	if r.Method != http.MethodGet || !ok || !known {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(`{"error":{"code":404,"message":"The resource '` + r.URL.Path + `' was not found","errors":[{"reason":"notFound"}]}}`))
		return
	}
	q := r.URL.Query()
	f.requests = append(f.requests, path+" "+q.Get("filter")+" "+q.Get("pageToken"))
	page := 0
	if tok := q.Get("pageToken"); tok != "" {
		page = int(tok[1] - '0')
	}
	out := map[string]any{"kind": "compute#list", "id": "projects/p/" + path}
	if q.Get("filter") == c.filter && page < len(c.pages) {
		var items []map[string]any
		for _, it := range c.pages[page] {
			item := map[string]any{
				"kind": "compute#thing", "id": "1234567890123456789", "name": it.Name, "labels": it.Labels,
				"selfLink": "https://www.googleapis.com/compute/v1/projects/p/" + path + "/" + it.Name,
			}
			if it.Status != "" {
				item["status"] = it.Status
			}
			items = append(items, item)
		}
		out["items"] = items
		if page+1 < len(c.pages) {
			out["nextPageToken"] = "t" + string(rune('0'+page+1))
		}
	}
	json.NewEncoder(w).Encode(out)
}

func newFakeGCP() *fakeGCP {
	label := `labels.kubeup-cluster="c"`
	name := `name eq "kubeup-c-.*"`
	c := map[string]string{"kubeup-cluster": "c"}
	return &fakeGCP{collections: map[string]gcpCollection{
		"zones/z/instances": {label, [][]gcpFakeItem{{
			{"kubeup-c-master-0", c, "RUNNING"},
			{"kubeup-d-master-0", map[string]string{"kubeup-cluster": "d"}, "RUNNING"}, // a filter the server ignored
		}}},
		"zones/z/disks":             {label, nil},
		"zones/z/instanceGroups":    {name, [][]gcpFakeItem{{{Name: "kubeup-c-masters"}}}},
		"regions/r/addresses":       {label, [][]gcpFakeItem{{{Name: "kubeup-c-api", Labels: c}}}},
		"regions/r/forwardingRules": {label, [][]gcpFakeItem{{{Name: "kubeup-c-api", Labels: c}}}},
		"regions/r/backendServices": {name, [][]gcpFakeItem{{{Name: "kubeup-c-api"}}}},
		"regions/r/healthChecks":    {name, nil},
		"regions/r/subnetworks":     {name, nil},
		"global/networks":           {name, [][]gcpFakeItem{{{Name: "kubeup-c-net"}}}},
		"global/routes":             {name, [][]gcpFakeItem{{{Name: "kubeup-c-pods-node-0"}}}},
		"global/firewalls": {name, [][]gcpFakeItem{
			{{Name: "kubeup-c-ssh"}, {Name: "default-allow-ssh"}},
			{{Name: "kubeup-c-internal"}},
		}},
	}}
}

func TestGCPLeftovers(t *testing.T) {
	f := newFakeGCP()
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx := context.Background()
	l := NewGCP("p", "r", "z", srv.Client(), srv.URL+"/compute/v1")

	got, err := l.Leftovers(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := []Resource{
		{"compute:forwardingRule", "regions/r/forwardingRules/kubeup-c-api", "kubeup-c-api"},
		{"compute:backendService", "regions/r/backendServices/kubeup-c-api", "kubeup-c-api"},
		{"compute:instanceGroup", "zones/z/instanceGroups/kubeup-c-masters", "kubeup-c-masters"},
		{"compute:instance", "zones/z/instances/kubeup-c-master-0", "kubeup-c-master-0"},
		{"compute:address", "regions/r/addresses/kubeup-c-api", "kubeup-c-api"},
		{"compute:route", "global/routes/kubeup-c-pods-node-0", "kubeup-c-pods-node-0"},
		{"compute:firewall", "global/firewalls/kubeup-c-ssh", "kubeup-c-ssh"},
		{"compute:firewall", "global/firewalls/kubeup-c-internal", "kubeup-c-internal"},
		{"compute:network", "global/networks/kubeup-c-net", "kubeup-c-net"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("leftovers:\n got %v\nwant %v", got, want)
	}

	f.mu.Lock()
	wantReq := []string{
		`regions/r/forwardingRules labels.kubeup-cluster="c" `,
		`regions/r/backendServices name eq "kubeup-c-.*" `,
		`regions/r/healthChecks name eq "kubeup-c-.*" `,
		`zones/z/instanceGroups name eq "kubeup-c-.*" `,
		`zones/z/instances labels.kubeup-cluster="c" `,
		`zones/z/disks labels.kubeup-cluster="c" `,
		`regions/r/addresses labels.kubeup-cluster="c" `,
		`global/routes name eq "kubeup-c-.*" `,
		`global/firewalls name eq "kubeup-c-.*" `,
		`global/firewalls name eq "kubeup-c-.*" t1`,
		`regions/r/subnetworks name eq "kubeup-c-.*" `,
		`global/networks name eq "kubeup-c-.*" `,
	}
	if !slices.Equal(f.requests, wantReq) {
		t.Errorf("requests:\n got %q\nwant %q", f.requests, wantReq)
	}
	f.mu.Unlock()

	err = Check(ctx, l, "c")
	var le *Error
	if !errors.As(err, &le) || len(le.Resources) != len(want) {
		t.Fatalf("Check: %v", err)
	}
	msg := err.Error()
	t.Log(msg)
	for _, r := range want {
		if !strings.Contains(msg, "\n  "+r.String()+"\n") {
			t.Errorf("Check's error lacks %s:\n%s", r, msg)
		}
	}
	if strings.Contains(msg, "kubeup-d-") || strings.Contains(msg, "default-allow-ssh") {
		t.Errorf("Check's error names another cluster's resources:\n%s", msg)
	}
	for _, s := range []string{
		"Google Cloud console",
		"gcloud compute forwarding-rules delete kubeup-c-api --region r --project p --quiet",
		"gcloud compute instances delete kubeup-c-master-0 --zone z --project p --quiet",
		"gcloud compute firewall-rules delete kubeup-c-internal kubeup-c-ssh --project p --quiet",
		"gcloud compute networks delete kubeup-c-net --project p --quiet",
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("Check's error lacks %q:\n%s", s, msg)
		}
	}
	if strings.Index(msg, "networks delete") < strings.Index(msg, "firewall-rules delete") {
		t.Errorf("network deleted before its firewalls:\n%s", msg)
	}

	if err := Check(ctx, l, "other"); err != nil {
		t.Errorf("nothing left: %v", err)
	}
}

func TestGCPLeftoversErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":{"code":403,"message":"Required 'compute.forwardingRules.list' permission for 'projects/p'"}}`))
	}))
	defer srv.Close()
	ctx := context.Background()

	err := Check(ctx, NewGCP("p", "", "r-z", srv.Client(), srv.URL), "c")
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "compute.forwardingRules.list") ||
		!strings.Contains(err.Error(), "regions/r/forwardingRules") {
		t.Errorf("err = %v, want the 403 and its message", err)
	}
	if _, err := NewGCP("p", "r", "", srv.Client(), srv.URL).Leftovers(ctx, "c"); err == nil {
		t.Error("no zone accepted")
	}
}

func TestGCPInstances(t *testing.T) {
	f := newFakeGCP()
	c := map[string]string{"kubeup-cluster": "c"}
	f.collections["zones/z/instances"] = gcpCollection{`labels.kubeup-cluster="c"`, [][]gcpFakeItem{
		{{"kubeup-c-master-0", c, "RUNNING"}, {"kubeup-c-node-0", c, "TERMINATED"}},
		{
			{"kubeup-c-node-1", c, "STAGING"},
			// Another cluster's, whose name begins "kubeup-c-": a filter
			// the server ignored.
			{"kubeup-c-x-master-0", map[string]string{"kubeup-cluster": "c-x"}, "RUNNING"},
			{"vm-1", c, "RUNNING"}, // not named as kubeup names machines
		},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx := context.Background()
	l := NewGCP("p", "r", "z", srv.Client(), srv.URL+"/compute/v1")

	got, err := l.Instances(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"master-0": "RUNNING", "node-0": "TERMINATED", "node-1": "STAGING"}
	if !maps.Equal(got, want) {
		t.Errorf("Instances(c):\n got %v\nwant %v", got, want)
	}
	f.mu.Lock()
	wantReq := []string{`zones/z/instances labels.kubeup-cluster="c" `, `zones/z/instances labels.kubeup-cluster="c" t1`}
	if !slices.Equal(f.requests, wantReq) {
		t.Errorf("requests:\n got %q\nwant %q", f.requests, wantReq)
	}
	f.mu.Unlock()

	if got, err := l.Instances(ctx, "other"); err != nil || len(got) != 0 {
		t.Errorf("Instances(other) = %v, %v", got, err)
	}
	if _, err := l.Instances(ctx, ""); err == nil {
		t.Error("empty cluster name accepted")
	}
	if _, err := NewGCP("p", "r", "", srv.Client(), srv.URL+"/compute/v1").Instances(ctx, "c"); err == nil || !strings.Contains(err.Error(), `zone ""`) {
		t.Errorf("no zone: err = %v", err)
	}
}

func TestGCPInstancesError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":{"code":403,"message":"Required 'compute.instances.list' permission for 'projects/p'"}}`))
	}))
	defer srv.Close()
	got, err := NewGCP("p", "", "r-z", srv.Client(), srv.URL).Instances(context.Background(), "c")
	if err == nil || !strings.Contains(err.Error(), "gcp list zones/r-z/instances") || !strings.Contains(err.Error(), "403") ||
		!strings.Contains(err.Error(), "compute.instances.list") {
		t.Errorf("Instances = %v, %v; want the 403 and its message", got, err)
	}
}

func TestGCPClient(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("CLOUDSDK_CONFIG", dir)
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(dir, "missing.json"))
	_, err := GCPClient(context.Background())
	if err == nil || !strings.Contains(err.Error(), "gcloud auth application-default login") ||
		!strings.Contains(err.Error(), "GOOGLE_APPLICATION_CREDENTIALS") || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("err = %v, want the advice and the reason", err)
	}

	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "p",
		"private_key_id": "k1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: must(x509.MarshalPKCS8PrivateKey(key))})),
		"client_email":   "kubeup@p.iam.gserviceaccount.com",
		"token_uri":      "http://127.0.0.1:1/token",
	})
	file := filepath.Join(dir, "sa.json")
	if err := os.WriteFile(file, sa, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", file)
	if c, err := GCPClient(context.Background()); err != nil || c == nil {
		t.Errorf("service account key: %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}
