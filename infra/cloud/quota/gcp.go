package quota

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"kubeup.dev/kubeup/infra/cloud"
	"kubeup.dev/kubeup/infra/cloud/leftovers"
)

const gcpPermissions = "the permissions compute.regions.get and compute.instances.list"

// GCP checks a project's regional vCPU quotas through the Compute Engine
// v1 REST API: the limit and usage of each metric from regions.get, less
// the vCPUs of the cluster's own machines (instances.list in its zone).
type GCP struct {
	project, region string
	client          *http.Client
	endpoint        string
}

// NewGCP returns a checker; client is authorized (leftovers.GCPClient),
// endpoint is "" for leftovers.ComputeEndpoint, and project and region ""
// are the cluster's.
func NewGCP(project, region string, client *http.Client, endpoint string) *GCP {
	if endpoint == "" {
		endpoint = leftovers.ComputeEndpoint
	}
	if !strings.HasSuffix(endpoint, "/") {
		endpoint += "/"
	}
	if client == nil {
		client = http.DefaultClient
	}
	return &GCP{project: project, region: region, client: client, endpoint: endpoint}
}

type gcpQuota struct {
	Metric string  `json:"metric"`
	Limit  float64 `json:"limit"`
	Usage  float64 `json:"usage"`
}

type gcpInstance struct {
	Name        string            `json:"name"`
	MachineType string            `json:"machineType"`
	Status      string            `json:"status"`
	Labels      map[string]string `json:"labels"`
}

// Check implements Checker.
func (g *GCP) Check(ctx context.Context, c cloud.Cluster) error {
	if c.Provider != cloud.GCP {
		return fmt.Errorf("gcp: cluster %q is on %q", c.Name, c.Provider)
	}
	needs, err := Needs(c)
	if err != nil {
		return fmt.Errorf("gcp: %w", err)
	}
	if len(needs) == 0 {
		return nil
	}
	project, region := cmp.Or(g.project, c.Project), cmp.Or(g.region, c.Region)
	if project == "" || region == "" {
		return fmt.Errorf("gcp: the quota check needs a project and a region (have %q, %q)", project, region)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	regionPath := "projects/" + url.PathEscape(project) + "/regions/" + url.PathEscape(region)
	var reg struct {
		Quotas []gcpQuota `json:"quotas"`
	}
	if err := g.get(ctx, regionPath, &reg); err != nil {
		return fmt.Errorf("gcp: %w: compute regions.get %s failed: %w; %s", ErrUnknown, regionPath, err, unknownHint(gcpPermissions))
	}
	own, err := g.own(ctx, project, c)
	if err != nil {
		return err
	}

	console := "https://console.cloud.google.com/iam-admin/quotas?project=" + url.QueryEscape(project)
	var short []error
	for _, n := range needs {
		i := 0
		for i < len(reg.Quotas) && reg.Quotas[i].Metric != n.Metric {
			i++
		}
		if i == len(reg.Quotas) {
			return fmt.Errorf("gcp: %w: region %s of project %s reports no quota %q (for %s machines): see the console (%s), or skip the check with %s",
				ErrUnknown, region, project, n.Metric, n.Family, console, SkipFlag)
		}
		q := reg.Quotas[i]
		others := max(int(q.Usage)-own[n.Metric], 0)
		if float64(others+n.VCPUs) <= q.Limit {
			continue
		}
		short = append(short, fmt.Errorf("gcp: the cluster needs %d vCPUs of quota %q in %s; the limit is %s and %s: "+
			"request an increase in the console (%s) or use smaller machine types",
			n.VCPUs, n.Metric, region, strconv.FormatFloat(q.Limit, 'f', -1, 64), inUse(others, min(own[n.Metric], int(q.Usage))), console))
	}
	return errors.Join(short...)
}

// own sums, per metric, the vCPUs of the cluster's machines (by
// cloud.ClusterLabel) in its zone that use CPU quota: all but stopped
// (TERMINATED) and SUSPENDED ones. Machine types outside the catalogue
// are not credited.
func (g *GCP) own(ctx context.Context, project string, c cloud.Cluster) (map[string]int, error) {
	own := map[string]int{}
	if c.Zone == "" || c.Name == "" {
		return own, nil
	}
	base := "projects/" + url.PathEscape(project) + "/zones/" + url.PathEscape(c.Zone) + "/instances"
	q := url.Values{"filter": {"labels." + cloud.ClusterLabel + `="` + c.Name + `"`}, "maxResults": {"500"}}
	for range 100 {
		var page struct {
			Items         []gcpInstance `json:"items"`
			NextPageToken string        `json:"nextPageToken"`
		}
		if err := g.get(ctx, base+"?"+q.Encode(), &page); err != nil {
			return nil, fmt.Errorf("gcp: %w: compute instances.list %s failed: %w; %s", ErrUnknown, base, err, unknownHint(gcpPermissions))
		}
		for _, i := range page.Items {
			if i.Labels[cloud.ClusterLabel] != c.Name || i.Status == "TERMINATED" || i.Status == "SUSPENDED" {
				continue
			}
			t, err := cloud.LookupType(cloud.GCP, path.Base(i.MachineType))
			if err != nil {
				continue
			}
			if _, metric, err := quotaOf(cloud.GCP, t.Name); err == nil {
				own[metric] += t.VCPUs
			}
		}
		if page.NextPageToken == "" || page.NextPageToken == q.Get("pageToken") {
			return own, nil
		}
		q.Set("pageToken", page.NextPageToken)
	}
	return own, nil
}

// get GETs endpoint+rel into v.
func (g *GCP) get(ctx context.Context, rel string, v any) error {
	return leftovers.GetJSON(ctx, g.client, g.endpoint+rel, v)
}
