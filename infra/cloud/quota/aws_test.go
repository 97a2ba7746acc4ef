package quota

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"kubeup.dev/kubeup/infra/cloud"
)

// fakeInstance is one instance DescribeInstances returns.
type fakeInstance struct {
	id, typ, lifecycle, cluster string
	cores, threads              int // 0: no cpuOptions
}

// fakeAWS speaks Service Quotas (AWS JSON 1.1) and EC2 (query protocol,
// XML responses).
type fakeAWS struct {
	limit     float64
	denyQuota bool // GetServiceQuota answers 403 AccessDeniedException
	denyEC2   bool // DescribeInstances answers 403 UnauthorizedOperation
	pages     [][]fakeInstance

	mu         sync.Mutex
	quotaCalls []string // "ServiceCode QuotaCode"
	ec2Calls   []string // "Action states NextToken"
	scopes     []string // the signature's credential scopes
}

func (f *fakeAWS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
		cred, _, _ = strings.Cut(cred, ",")
		_, scope, _ := strings.Cut(cred, "/")
		f.scopes = append(f.scopes, scope[strings.Index(scope, "/")+1:])
	}
	if target := r.Header.Get("X-Amz-Target"); target != "" {
		f.serviceQuotas(w, r, target)
		return
	}
	f.ec2(w, r)
}

func (f *fakeAWS) serviceQuotas(w http.ResponseWriter, r *http.Request, target string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.1")
	if target != "ServiceQuotasV20190624.GetServiceQuota" || r.Header.Get("Content-Type") != "application/x-amz-json-1.1" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprintf(w, `{"__type":"IllegalArgumentException","message":"fake: unexpected %s %s"}`, target, r.Header.Get("Content-Type"))
		return
	}
	var in struct{ ServiceCode, QuotaCode string }
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	f.quotaCalls = append(f.quotaCalls, in.ServiceCode+" "+in.QuotaCode)
	if f.denyQuota {
		w.Header().Set("X-Amzn-Errortype", "AccessDeniedException")
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"__type":"AccessDeniedException","Message":"User: arn:aws:iam::123456789012:user/u is not authorized to perform: servicequotas:GetServiceQuota"}`)
		return
	}
	if in.ServiceCode != "ec2" || in.QuotaCode != "L-1216C47A" {
		w.WriteHeader(http.StatusBadRequest)
		fmt.Fprint(w, `{"__type":"NoSuchResourceException","Message":"fake: no such quota"}`)
		return
	}
	fmt.Fprintf(w, `{"Quota":{"ServiceCode":"ec2","ServiceName":"Amazon Elastic Compute Cloud (Amazon EC2)",`+
		`"QuotaArn":"arn:aws:servicequotas:us-east-1:123456789012:ec2/L-1216C47A","QuotaCode":"L-1216C47A",`+
		`"QuotaName":"Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances","Value":%g,"Unit":"None",`+
		`"Adjustable":true,"GlobalQuota":false,"UsageMetric":{"MetricNamespace":"AWS/Usage","MetricName":"ResourceCount"}}}`, f.limit)
}

func (f *fakeAWS) ec2(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	form := r.PostForm
	action, token := form.Get("Action"), form.Get("NextToken")
	f.ec2Calls = append(f.ec2Calls, fmt.Sprintf("%s %s=%s,%s %s", action, form.Get("Filter.1.Name"), form.Get("Filter.1.Value.1"), form.Get("Filter.1.Value.2"), token))
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	if action != "DescribeInstances" || f.denyEC2 {
		code, status := "InvalidAction", http.StatusBadRequest
		if f.denyEC2 {
			code, status = "UnauthorizedOperation", http.StatusForbidden
		}
		w.WriteHeader(status)
		fmt.Fprintf(w, `<Response><Errors><Error><Code>%s</Code><Message>You are not authorized to perform this operation. User: arn:aws:iam::123456789012:user/u is not authorized to perform: ec2:%s</Message></Error></Errors><RequestID>r</RequestID></Response>`, code, action)
		return
	}
	page := 0
	if token != "" {
		fmt.Sscanf(token, "page%d", &page)
	}
	var items, next string
	if page < len(f.pages) {
		for _, i := range f.pages[page] {
			items += instanceXML(i)
		}
	}
	if page+1 < len(f.pages) {
		next = fmt.Sprintf("<nextToken>page%d</nextToken>", page+1)
	}
	fmt.Fprintf(w, `<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>r1</requestId>`+
		`<reservationSet><item><reservationId>r-1</reservationId><ownerId>123456789012</ownerId><instancesSet>%s</instancesSet></item></reservationSet>%s</DescribeInstancesResponse>`, items, next)
}

func instanceXML(i fakeInstance) string {
	s := `<item><instanceId>` + i.id + `</instanceId><instanceType>` + i.typ + `</instanceType>` +
		`<instanceState><code>16</code><name>running</name></instanceState>`
	if i.lifecycle != "" {
		s += `<instanceLifecycle>` + i.lifecycle + `</instanceLifecycle>`
	}
	if i.cores > 0 {
		s += fmt.Sprintf(`<cpuOptions><coreCount>%d</coreCount><threadsPerCore>%d</threadsPerCore></cpuOptions>`, i.cores, i.threads)
	}
	if i.cluster != "" {
		s += `<tagSet><item><key>` + cloud.ClusterTag + `</key><value>` + i.cluster + `</value></item></tagSet>`
	}
	return s + `</item>`
}

func fakeAWSConfig(url string) aws.Config {
	return aws.Config{
		Region:       "us-east-1",
		Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
		BaseEndpoint: aws.String(url),
		Retryer:      func() aws.Retryer { return aws.NopRetryer{} },
	}
}

// others are 2 vCPUs that count (t3.large 1 core × 2 threads) and
// instances that do not: spot, GPU, Inferentia (an "i" that is not I).
var others = []fakeInstance{
	{id: "i-other", typ: "t3.large", cores: 1, threads: 2},
	{id: "i-spot", typ: "m6i.xlarge", lifecycle: "spot", cores: 2, threads: 2},
	{id: "i-gpu", typ: "g5.xlarge", cores: 2, threads: 2},
	{id: "i-inf", typ: "inf2.xlarge", cores: 2, threads: 2},
}

func checkAWS(t *testing.T, f *fakeAWS, c cloud.Cluster) error {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	err := NewAWS(fakeAWSConfig(srv.URL)).Check(context.Background(), c)
	if err != nil {
		t.Log(err)
	}
	return err
}

func TestAWSEnough(t *testing.T) {
	// 2 in use by others + 4 needed = the limit 6. Counting the spot, GPU
	// or Inferentia instances, or the cluster's own (on page 2), or the
	// limit itself as short, fails.
	f := &fakeAWS{limit: 6, pages: [][]fakeInstance{others, {{id: "i-own", typ: "t3.medium", cluster: "c", cores: 1, threads: 2}}}}
	if err := checkAWS(t, f, cluster(cloud.AWS, 1, "t3.medium", 1, "t3.large")); err != nil {
		t.Fatalf("Check: %v", err)
	}
	if want := []string{"ec2 L-1216C47A"}; !slices.Equal(f.quotaCalls, want) {
		t.Errorf("GetServiceQuota calls = %q, want %q", f.quotaCalls, want)
	}
	want := []string{"DescribeInstances instance-state-name=pending,running ", "DescribeInstances instance-state-name=pending,running page1"}
	if !slices.Equal(f.ec2Calls, want) {
		t.Errorf("EC2 calls = %q, want %q", f.ec2Calls, want)
	}
	if want := []string{"us-east-1/servicequotas/aws4_request", "us-east-1/ec2/aws4_request", "us-east-1/ec2/aws4_request"}; !slices.Equal(f.scopes, want) {
		t.Errorf("signed for %q, want %q", f.scopes, want)
	}
}

func TestAWSShort(t *testing.T) {
	f := &fakeAWS{limit: 5, pages: [][]fakeInstance{others}}
	err := checkAWS(t, f, cluster(cloud.AWS, 1, "t3.medium", 1, "t3.large"))
	want := `aws: the cluster needs 4 vCPUs of "Running On-Demand Standard instances" (L-1216C47A) in us-east-1; ` +
		`the quota is 5 and 2 are in use: request an increase in the Service Quotas console ` +
		`(https://console.aws.amazon.com/servicequotas/home/services/ec2/quotas/L-1216C47A) or use smaller instance types`
	if err == nil || err.Error() != want {
		t.Fatalf("Check:\n got %v\nwant %s", err, want)
	}
	if errors.Is(err, ErrUnknown) {
		t.Error("a shortfall is ErrUnknown")
	}

	// 3 × m6i.xlarge + 2 × r6i.large = 16; the cluster's own 4 (a
	// running master without cpuOptions: the catalogue's 4) not counted.
	f = &fakeAWS{limit: 17, pages: [][]fakeInstance{append(slices.Clone(others), fakeInstance{id: "i-own", typ: "m6i.xlarge", cluster: "c"})}}
	err = checkAWS(t, f, cluster(cloud.AWS, 3, "m6i.xlarge", 2, "r6i.large"))
	if err == nil || !strings.Contains(err.Error(), "needs 16 vCPUs") ||
		!strings.Contains(err.Error(), "the quota is 17 and 2 are in use by other machines (not counting the cluster's own 4)") {
		t.Fatalf("Check: %v", err)
	}
}

func TestAWSUnknown(t *testing.T) {
	c := cluster(cloud.AWS, 1, "t3.medium", 1, "t3.large")
	f := &fakeAWS{limit: 100, denyQuota: true, pages: [][]fakeInstance{others}}
	err := checkAWS(t, f, c)
	if !errors.Is(err, ErrUnknown) {
		t.Fatalf("Check: %v, want ErrUnknown", err)
	}
	for _, s := range []string{"aws: quotas unknown: servicequotas GetServiceQuota (ec2, L-1216C47A) in us-east-1 failed",
		"AccessDeniedException", "not authorized to perform: servicequotas:GetServiceQuota",
		"servicequotas:GetServiceQuota and ec2:DescribeInstances", "--skip-quota-check"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error lacks %q", s)
		}
	}
	if len(f.ec2Calls) != 0 {
		t.Errorf("EC2 called after the quota failed: %q", f.ec2Calls)
	}

	f = &fakeAWS{limit: 100, denyEC2: true}
	err = checkAWS(t, f, c)
	if !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "ec2 DescribeInstances in us-east-1 failed") ||
		!strings.Contains(err.Error(), "UnauthorizedOperation") || !strings.Contains(err.Error(), "--skip-quota-check") {
		t.Fatalf("Check: %v", err)
	}

	// A standard instance whose vCPUs are unknown makes the usage unknown.
	f = &fakeAWS{limit: 100, pages: [][]fakeInstance{{{id: "i-odd", typ: "m5.large"}}}}
	if err := checkAWS(t, f, c); !errors.Is(err, ErrUnknown) || !strings.Contains(err.Error(), "vCPUs of instance i-odd (m5.large) are unknown") {
		t.Fatalf("Check: %v", err)
	}
}

func TestAWSNothingToCheck(t *testing.T) {
	f := &fakeAWS{limit: 0}
	if err := checkAWS(t, f, cluster(cloud.AWS, 0, "", 0, "")); err != nil {
		t.Errorf("no machines: %v", err)
	}
	if err := checkAWS(t, f, cluster(cloud.GCP, 1, "e2-medium", 0, "")); err == nil {
		t.Error("a GCP cluster: no error")
	}
	if err := checkAWS(t, f, cluster(cloud.AWS, 1, "t3.nano", 0, "")); err == nil || !strings.Contains(err.Error(), "t3.nano") {
		t.Errorf("unknown type: %v", err)
	}
	if len(f.quotaCalls)+len(f.ec2Calls) != 0 {
		t.Errorf("calls: %q %q", f.quotaCalls, f.ec2Calls)
	}
}
