package cluster

import (
	"context"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/render"
)

// The tunnel goes to the machine's own Running agent-access pod: not
// another machine's, not one starting or being deleted, not another app's.
func TestAgentAccessPod(t *testing.T) {
	t.Parallel()
	pod := func(name, node string, phase corev1.PodPhase, app string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: addons.Namespace, Labels: map[string]string{"k8s-app": app}},
			Spec:       corev1.PodSpec{NodeName: node},
			Status:     corev1.PodStatus{Phase: phase},
		}
		if deleting {
			p.DeletionTimestamp = &metav1.Time{Time: time.Now()}
			p.Finalizers = []string{"test"}
		}
		return p
	}
	cs := fake.NewClientset(
		pod("a-pending", "node-0", corev1.PodPending, addons.AgentAccessApp, false),
		pod("a-going", "node-0", corev1.PodRunning, addons.AgentAccessApp, true),
		pod("other-app", "node-0", corev1.PodRunning, "coredns", false),
		pod("a-master", "master-0", corev1.PodRunning, addons.AgentAccessApp, false),
	)
	ctx := context.Background()
	p, err := agentAccessPod(ctx, cs, "master-0")
	if err != nil || p.Name != "a-master" {
		t.Errorf("master-0: %v, %v; want a-master", p, err)
	}
	if p, err := agentAccessPod(ctx, cs, "node-0"); err == nil || !strings.Contains(err.Error(), "no Running "+addons.AgentAccessApp+" pod") {
		t.Errorf("node-0: %v, %v; want an error naming the missing pod", p, err)
	}
}

// On a cloud a machine whose agent cannot be reached (here: the API is
// unreachable, so no tunnel) is diagnosed with the command that prints its
// serial console.
func TestDiagnoseCloud(t *testing.T) {
	t.Parallel()
	c, err := config.Load(filepath.Join("..", "..", "examples", "aws.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := pki.Generate(render.PKICluster(c), pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	st := &State{Name: "demo", Provider: config.ProviderAWS, APIEndpoint: "https://127.0.0.1:1",
		Cloud:    &CloudState{Region: "eu-west-1", Zone: "eu-west-1a"},
		Machines: []MachineState{{Name: "master-0", Role: config.RoleMaster, IP: "10.0.1.10"}, {Name: "node-0", Role: config.RoleNode, IP: "10.0.1.20"}}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := Diagnose(ctx, t.TempDir(), st, b)
	for _, m := range st.Machines {
		want := "--region eu-west-1 --latest --output text --instance-id $(aws ec2 describe-instances --region eu-west-1 --filters Name=tag:Name,Values=demo-" + m.Name
		if !strings.Contains(out, "  "+m.Name+": ") || !strings.Contains(out, want) {
			t.Errorf("diagnosis of %s lacks its console command:\n%s", m.Name, out)
		}
	}
	if strings.Contains(out, "VM is not running") {
		t.Errorf("a cloud machine diagnosed as a local VM:\n%s", out)
	}
}

// status on a cloud: the instance's state from the cloud's API; its agent
// is asked only when it runs (or when the state could not be read).
func TestCloudVM(t *testing.T) {
	t.Parallel()
	states := map[string]string{"master-0": "running", "node-0": "stopped", "node-1": "RUNNING", "node-2": "TERMINATED"}
	for _, tc := range []struct {
		machine, listErr, want string
		running                bool
	}{
		{"master-0", "", "instance running", true},
		{"node-0", "", "instance stopped", false},
		{"node-1", "", "instance RUNNING", true},
		{"node-2", "", "instance TERMINATED", false},
		{"node-3", "", "no instance", false},
		{"node-0", "ec2 DescribeInstances: 403", "instance state unknown: ec2 DescribeInstances: 403", true},
	} {
		got, running := cloudVM(states, tc.listErr, tc.machine)
		if got != tc.want || running != tc.running {
			t.Errorf("%s (%q): %q %v, want %q %v", tc.machine, tc.listErr, got, running, tc.want, tc.running)
		}
	}
}

// etcd restore on a cloud refuses before touching anything: it would stop
// the API servers its tunnels to the agents pass through.
func TestEtcdRestoreRefusedOnCloud(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	st := &State{Name: "demo", Provider: config.ProviderGCP, Cloud: &CloudState{Region: "europe-west1", Zone: "europe-west1-b", Project: "p"}}
	if err := st.save(Dir(dataDir, "demo")); err != nil {
		t.Fatal(err)
	}
	err := EtcdRestore(context.Background(), dataDir, "demo", filepath.Join(dataDir, "missing.db"), io.Discard)
	if !errors.Is(err, ErrRestoreRemote) || !strings.Contains(err.Error(), "demo runs on gcp") {
		t.Errorf("err = %v, want ErrRestoreRemote naming the cluster and its cloud", err)
	}
}
