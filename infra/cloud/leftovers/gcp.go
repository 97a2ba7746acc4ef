package leftovers

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/google"

	"kubeup.dev/kubeup/infra/cloud"
)

// ComputeEndpoint is the Compute Engine API v1's base URL.
const ComputeEndpoint = "https://compute.googleapis.com/compute/v1/"

const computeReadOnly = "https://www.googleapis.com/auth/compute.readonly"

// GCPClient returns an HTTP client authorized with the application default
// credentials (compute.readonly), or a clear error when there are none.
func GCPClient(ctx context.Context) (*http.Client, error) {
	creds, err := google.FindDefaultCredentials(ctx, computeReadOnly)
	if err != nil {
		return nil, fmt.Errorf("no Google Cloud credentials: run `gcloud auth application-default login` "+
			"or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file: %w", err)
	}
	return oauth2.NewClient(ctx, creds.TokenSource), nil
}

// GCPLister lists a cluster's leftovers in one project, region and zone
// through the Compute Engine REST API. Kinds that carry labels are found by
// ClusterLabel, the others by the name prefix "kubeup-<cluster>-" (which
// also matches the resources of a cluster named "<cluster>-…").
type GCPLister struct {
	project, region, zone string
	client                *http.Client
	endpoint              string
}

// NewGCP returns a lister; client is authorized (GCPClient) and endpoint
// is "" for ComputeEndpoint. region "" is zone's region.
func NewGCP(project, region, zone string, client *http.Client, endpoint string) *GCPLister {
	if endpoint == "" {
		endpoint = ComputeEndpoint
	}
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	if region == "" {
		if i := strings.LastIndex(zone, "-"); i > 0 {
			region = zone[:i]
		}
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &GCPLister{project: project, region: region, zone: zone, client: client, endpoint: endpoint}
}

// gcpKind is one collection listed, in the order to delete.
type gcpKind struct {
	kind       string // Resource.Kind
	scope      string // "zone", "region" or "global"
	collection string // the API's
	labeled    bool   // found by label, else by name
	gcloud     string // gcloud compute's group
}

var gcpKinds = []gcpKind{
	{"compute:forwardingRule", "region", "forwardingRules", true, "forwarding-rules"},
	{"compute:backendService", "region", "backendServices", false, "backend-services"},
	{"compute:healthCheck", "region", "healthChecks", false, "health-checks"},
	{"compute:instanceGroup", "zone", "instanceGroups", false, "instance-groups unmanaged"},
	{"compute:instance", "zone", "instances", true, "instances"},
	{"compute:disk", "zone", "disks", true, "disks"},
	{"compute:address", "region", "addresses", true, "addresses"},
	{"compute:route", "global", "routes", false, "routes"},
	{"compute:firewall", "global", "firewalls", false, "firewall-rules"},
	{"compute:subnetwork", "region", "subnetworks", false, "networks subnets"},
	{"compute:network", "global", "networks", false, "networks"},
}

func (g *GCPLister) scopePath(scope string) string {
	switch scope {
	case "zone":
		return "zones/" + g.zone
	case "region":
		return "regions/" + g.region
	}
	return "global"
}

// Leftovers implements Lister.
func (g *GCPLister) Leftovers(ctx context.Context, cluster string) ([]Resource, error) {
	if err := validCluster(cluster); err != nil {
		return nil, err
	}
	if g.project == "" || g.zone == "" || g.region == "" {
		return nil, fmt.Errorf("gcp leftovers: project %q, region %q and zone %q must all be set", g.project, g.region, g.zone)
	}
	prefix := gcpPrefix(cluster)
	var out []Resource
	for _, k := range gcpKinds {
		filter := `name eq "` + regexp.QuoteMeta(prefix) + `.*"`
		if k.labeled {
			filter = labelFilter(cluster)
		}
		items, err := g.list(ctx, g.scopePath(k.scope)+"/"+k.collection, filter)
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			// The server filters; this guards against a filter it ignored.
			if k.labeled && it.Labels[cloud.ClusterLabel] != cluster ||
				!k.labeled && !strings.HasPrefix(it.Name, prefix) {
				continue
			}
			out = append(out, Resource{Kind: k.kind, ID: g.scopePath(k.scope) + "/" + k.collection + "/" + it.Name, Name: it.Name})
		}
	}
	return out, nil
}

// gcpPrefix begins the name of each of cluster's resources (infra/gcp).
func gcpPrefix(cluster string) string { return "kubeup-" + cluster + "-" }

// labelFilter selects the resources labelled with cluster.
func labelFilter(cluster string) string {
	return "labels." + cloud.ClusterLabel + `="` + cluster + `"`
}

// Instances implements InstanceLister: the zone's instances labelled with
// cluster, the machine name being the instance's name less
// "kubeup-<cluster>-" (instances without it are left out), the state its
// status.
func (g *GCPLister) Instances(ctx context.Context, cluster string) (map[string]string, error) {
	if err := validCluster(cluster); err != nil {
		return nil, err
	}
	if g.project == "" || g.zone == "" {
		return nil, fmt.Errorf("gcp instances: project %q and zone %q must both be set", g.project, g.zone)
	}
	items, err := g.list(ctx, g.scopePath("zone")+"/instances", labelFilter(cluster))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, it := range items {
		m, ok := strings.CutPrefix(it.Name, gcpPrefix(cluster))
		// The server filters; the label guards against a filter it ignored.
		if ok && m != "" && it.Labels[cloud.ClusterLabel] == cluster {
			out[m] = it.Status
		}
	}
	return out, nil
}

type gcpItem struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
	Status string            `json:"status"` // instances'
}

type gcpPage struct {
	Items         []gcpItem `json:"items"`
	NextPageToken string    `json:"nextPageToken"`
}

// list GETs projects/<project>/<path> with filter, following nextPageToken.
func (g *GCPLister) list(ctx context.Context, path, filter string) ([]gcpItem, error) {
	var items []gcpItem
	token := ""
	for range 1000 {
		q := url.Values{"filter": {filter}, "maxResults": {"500"}}
		if token != "" {
			q.Set("pageToken", token)
		}
		u := g.endpoint + "projects/" + url.PathEscape(g.project) + "/" + path + "?" + q.Encode()
		var page gcpPage
		if err := g.get(ctx, u, &page); err != nil {
			return nil, fmt.Errorf("gcp list %s: %w", path, err)
		}
		items = append(items, page.Items...)
		if page.NextPageToken == "" {
			return items, nil
		}
		if page.NextPageToken == token {
			return nil, fmt.Errorf("gcp list %s: page token %q repeated", path, token)
		}
		token = page.NextPageToken
	}
	return nil, fmt.Errorf("gcp list %s: too many pages", path)
}

func (g *GCPLister) get(ctx context.Context, u string, v any) error {
	return GetJSON(ctx, g.client, u, v)
}

// GetJSON GETs a Google REST URL with client into v; an error carries the
// status and the API's message.
func GetJSON(ctx context.Context, client *http.Client, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		msg := strings.TrimSpace(string(body))
		if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
			msg = e.Error.Message
		}
		if len(msg) > 500 {
			msg = msg[:500] + "…"
		}
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("decoding the response: %w", err)
	}
	return nil
}

func (g *GCPLister) deleteHint(cluster string, rs []Resource) string {
	var b strings.Builder
	fmt.Fprintf(&b, "delete them by hand in the Google Cloud console (Compute Engine, project %s) or with gcloud, in this order:\n", g.project)
	for _, k := range gcpKinds {
		var names []string
		for _, r := range rs {
			if r.Kind == k.kind {
				names = append(names, r.Name)
			}
		}
		if len(names) == 0 {
			continue
		}
		where := ""
		switch k.scope {
		case "zone":
			where = " --zone " + g.zone
		case "region":
			where = " --region " + g.region
		}
		fmt.Fprintf(&b, "  gcloud compute %s delete %s%s --project %s --quiet\n", k.gcloud, strings.Join(names, " "), where, g.project)
	}
	fmt.Fprintf(&b, "then check again: gcloud compute instances list --project %s --filter=labels.%s=%s (and the other kinds above)", g.project, cloud.ClusterLabel, cluster)
	return b.String()
}
