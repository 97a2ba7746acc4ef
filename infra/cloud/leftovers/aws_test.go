package leftovers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"kubeup.dev/kubeup/infra/cloud"
)

const nlbARN = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:loadbalancer/net/kubeup-c-api/50dc6c495c0c9188"

// fakeAWS speaks the tagging API (AWS JSON 1.1) and EC2 (query protocol).
// The tagging API and NAT gateways serve cluster "c" only; instances are
// served by the value of their cluster tag, all of them when unfiltered.
type fakeAWS struct {
	instances map[string][]fakeInstance // by cluster
	pageSize  int                       // instances per DescribeInstances page, 0 for all
	fail      string                    // an EC2 action refused with UnauthorizedOperation

	mu         sync.Mutex
	tagFilters [][]map[string]any // GetResources' TagFilters, per call
	tokens     []string           // GetResources' PaginationToken, per call
	ec2Calls   []string           // "Action Filter.1.Name=Filter.1.Value.1[ NextToken]"
}

type fakeInstance struct{ id, state, name string }

// leftoverInstances are cluster "c"'s instances in TestAWSLeftovers.
var leftoverInstances = map[string][]fakeInstance{"c": {
	{"i-run", "running", "kubeup-c-master-0"},
	{"i-term", "terminated", "kubeup-c-node-0"},
	{"i-missed", "stopped", ""},
}}

func (f *fakeAWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		f.tagging(w, r, target)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	action, token := r.PostForm.Get("Action"), r.PostForm.Get("NextToken")
	call := fmt.Sprintf("%s %s=%s", action, r.PostForm.Get("Filter.1.Name"), r.PostForm.Get("Filter.1.Value.1"))
	if token != "" {
		call += " " + token
	}
	f.ec2Calls = append(f.ec2Calls, call)
	ours := r.PostForm.Get("Filter.1.Name") == "tag:"+cloud.ClusterTag && r.PostForm.Get("Filter.1.Value.1") == "c"
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	const ns = `xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"`
	switch {
	case action == f.fail:
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `<Response><Errors><Error><Code>UnauthorizedOperation</Code><Message>You are not authorized to perform this operation.</Message></Error></Errors><RequestID>r</RequestID></Response>`)
	case action == "DescribeInstances":
		items, next := f.instancePage(r.PostForm.Get("Filter.1.Name"), r.PostForm.Get("Filter.1.Value.1"), token)
		fmt.Fprintf(w, `<DescribeInstancesResponse %s><requestId>r1</requestId><reservationSet><item><reservationId>r-1</reservationId><instancesSet>%s</instancesSet></item></reservationSet>%s</DescribeInstancesResponse>`, ns, items, next)
	case action == "DescribeNatGateways":
		items := ""
		if ours {
			items = `<item><natGatewayId>nat-gone</natGatewayId><state>deleted</state></item>`
		}
		fmt.Fprintf(w, `<DescribeNatGatewaysResponse %s><requestId>r2</requestId><natGatewaySet>%s</natGatewaySet></DescribeNatGatewaysResponse>`, ns, items)
	default:
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `<Response><Errors><Error><Code>InvalidAction</Code><Message>fake: %s</Message></Error></Errors><RequestID>r</RequestID></Response>`, action)
	}
}

// instancePage is the page of instances at token ("" or "n<index>") that
// the filter selects, and the nextToken element if more follow.
func (f *fakeAWS) instancePage(filter, value, token string) (items, next string) {
	var all []fakeInstance
	switch filter {
	case "tag:" + cloud.ClusterTag:
		all = f.instances[value]
	case "":
		for _, c := range slices.Sorted(maps.Keys(f.instances)) {
			all = append(all, f.instances[c]...)
		}
	}
	start, _ := strconv.Atoi(strings.TrimPrefix(token, "n"))
	end := len(all)
	if f.pageSize > 0 && start+f.pageSize < end {
		end = start + f.pageSize
		next = fmt.Sprintf("<nextToken>n%d</nextToken>", end)
	}
	for _, i := range all[min(start, len(all)):end] {
		items += instanceXML(i.id, i.state, i.name)
	}
	return items, next
}

func instanceXML(id, state, name string) string {
	tags := ""
	if name != "" {
		tags = `<tagSet><item><key>Name</key><value>` + name + `</value></item></tagSet>`
	}
	return `<item><instanceId>` + id + `</instanceId><instanceState><code>16</code><name>` + state + `</name></instanceState>` + tags + `</item>`
}

func (f *fakeAWS) tagging(w http.ResponseWriter, r *http.Request, target string) {
	if target != "ResourceGroupsTaggingAPI_20170126.GetResources" || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		http.Error(w, `{"__type":"InvalidParameterException","message":"fake: unexpected request"}`, http.StatusBadRequest)
		return
	}
	var in struct {
		TagFilters      []map[string]any
		PaginationToken string
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.tagFilters = append(f.tagFilters, in.TagFilters)
	f.tokens = append(f.tokens, in.PaginationToken)
	ours := len(in.TagFilters) == 1 && in.TagFilters[0]["Key"] == cloud.ClusterTag &&
		fmt.Sprint(in.TagFilters[0]["Values"]) == "[c]"
	type tag struct{ Key, Value string }
	type mapping struct {
		ResourceARN string
		Tags        []tag
	}
	var out struct {
		ResourceTagMappingList []mapping
		PaginationToken        string `json:",omitempty"`
	}
	out.ResourceTagMappingList = []mapping{}
	ct := tag{cloud.ClusterTag, "c"}
	switch {
	case !ours:
	case in.PaginationToken == "":
		out.ResourceTagMappingList = []mapping{
			{"arn:aws:ec2:eu-west-1:123456789012:instance/i-run", []tag{ct, {"Name", "kubeup-c-master-0"}}},
			{"arn:aws:ec2:eu-west-1:123456789012:instance/i-term", []tag{ct, {"Name", "kubeup-c-node-0"}}},
			{"arn:aws:ec2:eu-west-1:123456789012:security-group/sg-1", []tag{ct, {"Name", "kubeup-c-master"}}},
		}
		out.PaginationToken = "page2"
	case in.PaginationToken == "page2":
		out.ResourceTagMappingList = []mapping{
			{nlbARN, []tag{ct}},
			{"arn:aws:ec2:eu-west-1:123456789012:natgateway/nat-gone", []tag{ct}},
		}
	}
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	json.NewEncoder(w).Encode(out)
}

func fakeAWSConfig(url string) aws.Config {
	return aws.Config{
		Region:       "eu-west-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint: aws.String(url),
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	}
}

func TestAWSLeftovers(t *testing.T) {
	f := &fakeAWS{instances: leftoverInstances}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx := context.Background()
	l := NewAWS(fakeAWSConfig(srv.URL))

	got, err := l.Leftovers(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := []Resource{
		{"ec2:instance", "i-run", "kubeup-c-master-0"},
		{"ec2:security-group", "sg-1", "kubeup-c-master"},
		{"elasticloadbalancing:loadbalancer", nlbARN, "kubeup-c-api"},
		{"ec2:instance", "i-missed", ""},
	}
	if !slices.Equal(got, want) {
		t.Errorf("leftovers:\n got %v\nwant %v", got, want)
	}

	f.mu.Lock()
	if len(f.tagFilters) != 2 || !slices.Equal(f.tokens, []string{"", "page2"}) {
		t.Errorf("GetResources calls: filters %v, tokens %q", f.tagFilters, f.tokens)
	}
	for _, tf := range f.tagFilters {
		if b, _ := json.Marshal(tf); string(b) != `[{"Key":"kubeup.dev/cluster","Values":["c"]}]` {
			t.Errorf("TagFilters = %s", b)
		}
	}
	wantEC2 := []string{"DescribeInstances tag:kubeup.dev/cluster=c", "DescribeNatGateways tag:kubeup.dev/cluster=c"}
	if !slices.Equal(f.ec2Calls, wantEC2) {
		t.Errorf("EC2 calls = %q, want %q", f.ec2Calls, wantEC2)
	}
	f.mu.Unlock()

	err = Check(ctx, l, "c")
	var le *Error
	if !errors.As(err, &le) || len(le.Resources) != 4 {
		t.Fatalf("Check: %v", err)
	}
	msg := err.Error()
	t.Log(msg)
	for _, r := range want {
		if !strings.Contains(msg, "\n  "+r.String()+"\n") {
			t.Errorf("Check's error lacks %s:\n%s", r, msg)
		}
	}
	for _, s := range []string{"i-term", "nat-gone"} {
		if strings.Contains(msg, s) {
			t.Errorf("Check's error names %s, which is gone:\n%s", s, msg)
		}
	}
	for _, s := range []string{
		"AWS console",
		"aws elbv2 delete-load-balancer --load-balancer-arn " + nlbARN + " --region eu-west-1",
		"aws ec2 terminate-instances --instance-ids i-missed i-run --region eu-west-1",
		"aws ec2 delete-security-group --group-id sg-1 --region eu-west-1",
	} {
		if !strings.Contains(msg, s) {
			t.Errorf("Check's error lacks %q:\n%s", s, msg)
		}
	}
	if strings.Index(msg, "delete-load-balancer") > strings.Index(msg, "terminate-instances") {
		t.Errorf("load balancer not deleted first:\n%s", msg)
	}

	if err := Check(ctx, l, "other"); err != nil {
		t.Errorf("nothing left: %v", err)
	}
}

func TestAWSInstances(t *testing.T) {
	f := &fakeAWS{pageSize: 4, instances: map[string][]fakeInstance{
		"c": {
			{"i-a0", "running", "c-master-0"},
			{"i-a1", "running", "c-master-1"},
			{"i-b1", "shutting-down", "c-master-1"}, // replaced by i-a1
			{"i-a2", "shutting-down", "c-master-2"}, // replaced by i-b2
			{"i-b2", "running", "c-master-2"},
			{"i-a3", "pending", "c-node-0"},
			{"i-b3", "terminated", "c-node-0"}, // replaced by i-a3
			{"i-a4", "stopped", "c-node-1"},
			{"i-a5", "terminated", "c-node-2"}, // gone, not replaced
			{"i-a6", "running", ""},            // no name: not a machine
			{"i-a7", "running", "bastion"},     // not named as kubeup names machines
		},
		// Another cluster whose instances' names begin with "c-".
		"c-x": {{"i-x0", "running", "c-x-master-0"}},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx := context.Background()
	l := NewAWS(fakeAWSConfig(srv.URL))

	got, err := l.Instances(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"master-0": "running",
		"master-1": "running",
		"master-2": "running",
		"node-0":   "pending",
		"node-1":   "stopped",
	}
	if !maps.Equal(got, want) {
		t.Errorf("Instances(c):\n got %v\nwant %v", got, want)
	}
	f.mu.Lock()
	wantEC2 := []string{
		"DescribeInstances tag:kubeup.dev/cluster=c",
		"DescribeInstances tag:kubeup.dev/cluster=c n4",
		"DescribeInstances tag:kubeup.dev/cluster=c n8",
	}
	if !slices.Equal(f.ec2Calls, wantEC2) {
		t.Errorf("EC2 calls = %q, want %q", f.ec2Calls, wantEC2)
	}
	f.mu.Unlock()

	if got, err := l.Instances(ctx, "c-x"); err != nil || !maps.Equal(got, map[string]string{"master-0": "running"}) {
		t.Errorf("Instances(c-x) = %v, %v", got, err)
	}
	if got, err := l.Instances(ctx, "other"); err != nil || len(got) != 0 {
		t.Errorf("Instances(other) = %v, %v", got, err)
	}
	if _, err := l.Instances(ctx, ""); err == nil {
		t.Error("empty cluster name accepted")
	}
}

func TestAWSInstancesError(t *testing.T) {
	srv := httptest.NewServer(&fakeAWS{fail: "DescribeInstances", instances: leftoverInstances})
	defer srv.Close()
	l := NewAWS(fakeAWSConfig(srv.URL))
	got, err := l.Instances(context.Background(), "c")
	if err == nil || !strings.Contains(err.Error(), "ec2 DescribeInstances") || !strings.Contains(err.Error(), "UnauthorizedOperation") {
		t.Errorf("Instances = %v, %v; want the DescribeInstances error", got, err)
	}
	if _, err := l.Leftovers(context.Background(), "c"); err == nil || !strings.Contains(err.Error(), "ec2 DescribeInstances") {
		t.Errorf("Leftovers: err = %v, want the DescribeInstances error", err)
	}
}

func TestParseARN(t *testing.T) {
	for _, c := range []struct {
		arn  string
		want Resource
	}{
		{"arn:aws:ec2:eu-west-1:1:instance/i-1", Resource{"ec2:instance", "i-1", ""}},
		{"arn:aws:ec2:eu-west-1:1:security-group/sg-1", Resource{"ec2:security-group", "sg-1", ""}},
		{nlbARN, Resource{"elasticloadbalancing:loadbalancer", nlbARN, "kubeup-c-api"}},
		{"arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/kubeup-c-api/73e2d6bc24d8a067", Resource{"elasticloadbalancing:targetgroup", "arn:aws:elasticloadbalancing:eu-west-1:1:targetgroup/kubeup-c-api/73e2d6bc24d8a067", "kubeup-c-api"}},
		{"arn:aws:iam::1:role/kubeup/kubeup-c-master", Resource{"iam:role", "arn:aws:iam::1:role/kubeup/kubeup-c-master", "kubeup-c-master"}},
		{"arn:aws:s3:::kubeup-c-state", Resource{"s3:bucket", "arn:aws:s3:::kubeup-c-state", "kubeup-c-state"}},
		{"arn:aws:logs:eu-west-1:1:log-group:kubeup-c", Resource{"logs:log-group", "arn:aws:logs:eu-west-1:1:log-group:kubeup-c", ""}},
		{"not-an-arn", Resource{"aws", "not-an-arn", ""}},
	} {
		if got := parseARN(c.arn); got != c.want {
			t.Errorf("parseARN(%q) = %#v, want %#v", c.arn, got, c.want)
		}
	}
}

// clearAWSEnv leaves the SDK no credentials: no keys, profiles, roles,
// container or instance metadata.
func clearAWSEnv(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"config", "credentials"} {
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("HOME", dir)
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	for _, k := range []string{
		"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY", "AWS_SECRET_KEY",
		"AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_ROLE_ARN", "AWS_ROLE_SESSION_NAME", "AWS_WEB_IDENTITY_TOKEN_FILE",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
		"AWS_EC2_METADATA_SERVICE_ENDPOINT", "AWS_REGION", "AWS_DEFAULT_REGION",
	} {
		t.Setenv(k, "") // restored after the test
		os.Unsetenv(k)
	}
}

func TestCheckAWSCredentialsNone(t *testing.T) {
	clearAWSEnv(t)
	ctx := context.Background()
	cfg, err := LoadAWSConfig(ctx, "eu-west-1")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = CheckAWSCredentials(ctx, cfg)
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("took %v", took)
	}
	if err == nil {
		t.Fatal("no error without credentials")
	}
	msg := err.Error()
	t.Log(msg)
	if !strings.HasPrefix(msg, noAWSCredentials+": ") || errors.Unwrap(err) == nil || len(msg) <= len(noAWSCredentials)+2 {
		t.Errorf("error lacks the advice or the SDK's reason: %v", err)
	}
	for _, s := range []string{"AWS_PROFILE", "AWS_ACCESS_KEY_ID", "aws configure"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error lacks %q: %v", s, err)
		}
	}

	if err := CheckAWSCredentials(ctx, aws.Config{}); err == nil || !strings.Contains(err.Error(), "aws configure") {
		t.Errorf("nil provider: %v", err)
	}
	if err := CheckAWSCredentials(ctx, fakeAWSConfig("http://127.0.0.1:1")); err != nil {
		t.Errorf("static credentials: %v", err)
	}
}

func TestLoadAWSConfigNoRegion(t *testing.T) {
	clearAWSEnv(t)
	if _, err := LoadAWSConfig(context.Background(), ""); err == nil || !strings.Contains(err.Error(), "no AWS region") {
		t.Errorf("err = %v, want no AWS region", err)
	}
	cfg, err := LoadAWSConfig(context.Background(), "us-east-2")
	if err != nil || cfg.Region != "us-east-2" {
		t.Errorf("region: %q, %v", cfg.Region, err)
	}
}
