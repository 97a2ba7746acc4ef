package cluster

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"kubeup.dev/kubeup/infra/cloud"
	"kubeup.dev/kubeup/provision/config"
)

func example(t *testing.T, name string) *config.Cluster {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	c, err := config.Load(filepath.Join(filepath.Dir(file), "..", "..", "examples", name))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// --preview shows both stacks' resources and the cost, offline, and
// writes nothing.
func TestPreviewCloud(t *testing.T) {
	for _, tc := range []struct {
		file  string
		wants []string
	}{
		{"aws.yaml", []string{
			"cluster demo-aws on aws (us-east-1a), nothing is created",
			"Stack images-aws-us-east-1-master-", "Stack images-aws-us-east-1-node-",
			"1  aws:ec2/ami", "1  aws:ebs/snapshotImport",
			"Stack demo-aws:", "2  aws:ec2/instance", "master-0, node-0", "1  aws:lb/loadBalancer", "1  aws:lb/targetGroupAttachment",
			"1 × t3.medium (master, 2 vCPU, 4 GiB)", "$0.0416/h", "1 × t3.large (node, 2 vCPU, 8 GiB)", "40 GiB of root volumes",
			"API load balancer", "total (list prices, without traffic)             $0.1567/h",
		}},
		{"gcp.yaml", []string{
			"cluster demo-gcp on gcp (my-project-123456 us-central1-a), nothing is created",
			"Stack images-gcp-my-project-123456-us-central1-master-",
			"1  gcp:compute/image", "Stack demo-gcp:", "2  gcp:compute/instance", "1  gcp:compute/forwardingRule",
			"1 × e2-medium (master, 2 vCPU, 4 GiB)", "total (list prices, without traffic)             $0.1360/h",
		}},
	} {
		dataDir, cacheDir := t.TempDir(), t.TempDir()
		var out bytes.Buffer
		if err := PreviewCloud(example(t, tc.file), Options{DataDir: dataDir, CacheDir: cacheDir}, &out); err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		for _, w := range tc.wants {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%s: the preview lacks %q:\n%s", tc.file, w, out.String())
			}
		}
		for _, d := range []string{dataDir, cacheDir} {
			if entries, _ := os.ReadDir(d); len(entries) != 0 {
				t.Errorf("%s: the preview wrote %v in %s", tc.file, entries, d)
			}
		}
	}
}

// Without credentials up fails first, saying what to set, and writes
// nothing: no state, no stack, no image build.
func TestUpCloudWithoutCredentials(t *testing.T) {
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("AWS_CONFIG_FILE", empty)
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", empty)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(t.TempDir(), "missing.json"))
	t.Setenv("CLOUDSDK_CONFIG", t.TempDir())
	for file, want := range map[string]string{"aws.yaml": "no AWS credentials", "gcp.yaml": "GOOGLE_APPLICATION_CREDENTIALS"} {
		dataDir, cacheDir := t.TempDir(), t.TempDir()
		_, _, err := Up(context.Background(), example(t, file), Options{DataDir: dataDir, CacheDir: cacheDir})
		if err == nil || !strings.Contains(err.Error(), `step "cloud credentials"`) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: up without credentials: %v (want the credentials step naming %q)", file, err, want)
		}
		for _, d := range []string{filepath.Join(dataDir, "clusters"), filepath.Join(dataDir, "state"), filepath.Join(cacheDir, "vm-images")} {
			if _, err := os.Stat(d); !os.IsNotExist(err) {
				t.Errorf("%s: up without credentials wrote %s", file, d)
			}
		}
	}
}

// Image stacks are named per provider, location, role and digest, and
// down --purge-images finds them all by their prefix.
func TestImageStackNames(t *testing.T) {
	img := cloud.Image{Role: cloud.RoleMaster, SHA256: strings.Repeat("ab", 32)}
	a := awsTarget{region: "eu-west-1", zone: "eu-west-1a"}
	g := gcpTarget{project: "proj-123456", region: "us-central1", zone: "us-central1-a"}
	for _, tc := range []struct {
		t          cloudTarget
		name, pref string
	}{
		{a, "images-aws-eu-west-1-master-abababababababababab", "images-aws-eu-west-1-"},
		{g, "images-gcp-proj-123456-us-central1-master-abababababababababab", "images-gcp-proj-123456-us-central1-"},
	} {
		if got := imageStack(tc.t, img); got != tc.name {
			t.Errorf("image stack %q, want %q", got, tc.name)
		}
		if got := imageStackPrefix(tc.t); got != tc.pref || !strings.HasPrefix(tc.name, got) {
			t.Errorf("prefix %q, want %q", got, tc.pref)
		}
	}
}
