package leftovers

import (
	"context"
	"errors"
	"strings"
	"testing"
)

type fakeLister struct {
	rs  []Resource
	err error
	got string
}

func (f *fakeLister) Leftovers(_ context.Context, cluster string) ([]Resource, error) {
	f.got = cluster
	return f.rs, f.err
}

func TestResourceString(t *testing.T) {
	for _, c := range []struct {
		r    Resource
		want string
	}{
		{Resource{"ec2:instance", "i-1", "kubeup-c-master-0"}, "ec2:instance i-1 (kubeup-c-master-0)"},
		{Resource{"ec2:security-group", "sg-1", ""}, "ec2:security-group sg-1"},
		{Resource{"compute:firewall", "global/firewalls/kubeup-c-ssh", "kubeup-c-ssh"}, "compute:firewall global/firewalls/kubeup-c-ssh"},
		{Resource{"s3:bucket", "b", "b"}, "s3:bucket b"},
	} {
		if got := c.r.String(); got != c.want {
			t.Errorf("%#v.String() = %q, want %q", c.r, got, c.want)
		}
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	if err := Check(ctx, &fakeLister{}, "c"); err != nil {
		t.Fatalf("nothing left: %v", err)
	}

	f := &fakeLister{rs: []Resource{
		{"ec2:volume", "vol-1", ""},
		{"ec2:instance", "i-1", "m0"},
	}}
	err := Check(ctx, f, "c")
	var le *Error
	if !errors.As(err, &le) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if f.got != "c" || le.Cluster != "c" || len(le.Resources) != 2 || le.Resources[0].Kind != "ec2:instance" {
		t.Errorf("error = %#v (lister asked for %q)", le, f.got)
	}
	msg := err.Error()
	for _, want := range []string{"\n  ec2:instance i-1 (m0)\n", "\n  ec2:volume vol-1\n", "console", "aws, gcloud"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q:\n%s", want, msg)
		}
	}

	boom := errors.New("boom")
	if err := Check(ctx, &fakeLister{err: boom}, "c"); !errors.Is(err, boom) {
		t.Errorf("lister error: %v", err)
	}
	if err := Check(ctx, &fakeLister{}, ""); err == nil {
		t.Error("empty cluster name accepted")
	}
}
