package provider

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	"github.com/pulumi/pulumi/sdk/v3/go/common/resource/plugin"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"
	"google.golang.org/protobuf/types/known/structpb"
)

func props(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := plugin.MarshalProperties(resource.NewPropertyMapFromMap(m), opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func machineInputs(dir string) map[string]any {
	return map[string]any{
		"name": "demo-node-0", "dir": filepath.Join(dir, "vm"), "image": filepath.Join(dir, "img.qcow2"),
		"seed": filepath.Join(dir, "seed.iso"), "cpus": 2, "memoryMiB": 2048, "diskBytes": 10 << 30,
		"firmware": "uefi", "accel": "tcg", "clusterMAC": "52:54:00:4d:00:64", "managementMAC": "52:54:01:4d:00:64",
		"forwards": []any{map[string]any{"name": "agent", "hostPort": 40000, "guestPort": 10290}},
	}
}

const machineURN = "urn:pulumi:demo::kubeup::kubeup:local:Machine::node-0"

func TestCheckMachine(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "img.qcow2"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "seed.iso"), nil, 0o644)
	s := NewServer()
	ok, err := s.Check(context.Background(), &pulumirpc.CheckRequest{Urn: machineURN, News: props(t, machineInputs(dir))})
	if err != nil || len(ok.Failures) != 0 {
		t.Fatalf("valid inputs: %v %v", ok.GetFailures(), err)
	}
	bad := machineInputs(dir)
	bad["firmware"], bad["cpus"], bad["seed"] = "coreboot", 0, filepath.Join(dir, "missing.iso")
	delete(bad, "managementMAC")
	res, err := s.Check(context.Background(), &pulumirpc.CheckRequest{Urn: machineURN, News: props(t, bad)})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range res.Failures {
		got = append(got, f.Property)
	}
	if strings.Join(got, ",") != "managementMAC,cpus,firmware,seed" {
		t.Errorf("failures on %v: %+v", got, res.Failures)
	}
}

// Diff: no change is no change; any changed input replaces the VM, the old
// one first (it holds the ports).
func TestDiff(t *testing.T) {
	s := NewServer()
	in := machineInputs("/x")
	same, err := s.Diff(context.Background(), &pulumirpc.DiffRequest{Urn: machineURN, OldInputs: props(t, in), News: props(t, in)})
	if err != nil || same.Changes != pulumirpc.DiffResponse_DIFF_NONE {
		t.Fatalf("unchanged: %v %v", same, err)
	}
	changed := machineInputs("/x")
	changed["memoryMiB"] = 4096
	changed["seedSHA256"] = "abc"
	d, err := s.Diff(context.Background(), &pulumirpc.DiffRequest{Urn: machineURN, OldInputs: props(t, in), News: props(t, changed)})
	if err != nil {
		t.Fatal(err)
	}
	if d.Changes != pulumirpc.DiffResponse_DIFF_SOME || !d.DeleteBeforeReplace || strings.Join(d.Replaces, ",") != "memoryMiB,seedSHA256" {
		t.Errorf("diff %+v", d)
	}
}

func TestUnknownType(t *testing.T) {
	_, err := NewServer().Check(context.Background(), &pulumirpc.CheckRequest{Urn: "urn:pulumi:demo::kubeup::kubeup:local:Router::r", News: props(t, map[string]any{})})
	if err == nil || !strings.Contains(err.Error(), `unknown resource type "kubeup:local:Router"`) {
		t.Errorf("err %v", err)
	}
}

// Read of a machine whose VM is not running reports it gone, so that the
// next up creates it again; Delete of a stopped VM removes its files.
func TestReadAndDeleteStoppedMachine(t *testing.T) {
	dir := t.TempDir()
	in := machineInputs(dir)
	vmDir := in["dir"].(string)
	os.MkdirAll(vmDir, 0o755)
	os.WriteFile(filepath.Join(vmDir, "qemu.pid"), []byte("999999\n"), 0o644)
	s := NewServer()
	r, err := s.Read(context.Background(), &pulumirpc.ReadRequest{Urn: machineURN, Id: vmDir, Properties: props(t, in)})
	if err != nil || r.Id != "" {
		t.Errorf("read of a stopped VM: id %q err %v", r.GetId(), err)
	}
	if _, err := s.Delete(context.Background(), &pulumirpc.DeleteRequest{Urn: machineURN, Id: vmDir, Properties: props(t, in)}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(vmDir); !os.IsNotExist(err) {
		t.Error("machine directory left after delete")
	}
}
