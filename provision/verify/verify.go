package verify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
)

// Target is the cluster to verify.
type Target struct {
	State      *cluster.State
	Bundle     *pki.Bundle
	Kubeconfig []byte
	Images     components.Images
	Out        io.Writer
	// CheckTimeout bounds each check (default 8 minutes: a busy cluster
	// under TCG can take minutes to start a pod).
	CheckTimeout time.Duration
}

// Result is one check's outcome.
type Result struct {
	Name     string
	Duration time.Duration
	Err      error
	Skipped  string // why, when the check does not apply
}

// check is one named step; it may leave facts in the run for later steps.
type check struct {
	name string
	run  func(ctx context.Context, r *run) error
}

// run is one verification's shared state.
type run struct {
	t       Target
	cs      kubernetes.Interface
	cfg     *rest.Config
	ns      string
	master  cluster.MachineState
	node    cluster.MachineState
	agents  map[string]*agent.Client
	webIPs  []string // pod IPs of the Deployment
	svcIP   string
	mastIP  string // pod IP of the server pod on a master
	cleanup []func(context.Context)
	// dnsDomain is the cluster DNS domain, once known.
	dnsDomain string
}

// errSkip marks a check that does not apply to this cluster.
type errSkip struct{ why string }

func (e errSkip) Error() string { return "skipped: " + e.why }

// Checks lists the checks in the order they run.
func checks() []check {
	return []check{
		{"a Deployment of 2 replicas gets 2 Running pods", checkDeployment},
		{"a Service gets endpoints", checkServiceEndpoints},
		{"a new namespace gets a default ServiceAccount with a usable token", checkServiceAccount},
		{"a pod on a node reaches a pod on a master by pod IP", checkPodToPod},
		{"a pod reaches a Service's ClusterIP", checkClusterIP},
		{"a pod mounts a Secret and a ConfigMap and reads them", checkVolumes},
		{"a failing liveness probe restarts its container", checkLiveness},
		{"a static pod from the kubelet's manifest directory appears as a mirror pod", checkStaticPod},
		{"the API server streams a pod's logs from its kubelet", checkLogs},
		{"a pod resolves the API server's and a Service's names through cluster DNS", checkDNS},
		{"the UI shows the overview, refuses a write, and its account cannot change anything", checkUI},
	}
}

// Run runs every check, printing each result as it finishes.
func Run(ctx context.Context, t Target) ([]Result, error) {
	if t.CheckTimeout == 0 {
		t.CheckTimeout = 8 * time.Minute
	}
	if t.Out == nil {
		t.Out = io.Discard
	}
	cfg, err := clientcmd.RESTConfigFromKubeConfig(t.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	r := &run{t: t, cs: cs, cfg: cfg, agents: map[string]*agent.Client{}}
	for _, m := range t.State.Machines {
		if m.Role == config.RoleMaster && r.master.Name == "" {
			r.master = m
		}
		if m.Role == config.RoleNode && r.node.Name == "" {
			r.node = m
		}
		c, err := cluster.AgentClient(ctx, t.State, m, t.Bundle)
		if err != nil {
			return nil, err
		}
		r.agents[m.Name] = c
	}
	if r.node.Name == "" {
		r.node = r.master // a masters-only cluster: pods tolerate the taint
	}
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	r.ns = "kubeup-verify-" + hex.EncodeToString(suffix)
	if err := create(ctx, "namespace", func(ctx context.Context) error {
		_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.ns}}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return nil, fmt.Errorf("create namespace %s: %w", r.ns, err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		for i := len(r.cleanup) - 1; i >= 0; i-- {
			r.cleanup[i](cctx)
		}
		_ = cs.CoreV1().Namespaces().Delete(cctx, r.ns, metav1.DeleteOptions{})
	}()

	var results []Result
	for _, c := range checks() {
		start := time.Now()
		cctx, cancel := context.WithTimeout(ctx, t.CheckTimeout)
		err := c.run(cctx, r)
		cancel()
		res := Result{Name: c.name, Duration: time.Since(start), Err: err}
		var skip errSkip
		if errors.As(err, &skip) {
			res.Err, res.Skipped = nil, skip.why
			fmt.Fprintf(t.Out, "SKIP  %-80s %6s (%s)\n", c.name, "", skip.why)
			results = append(results, res)
			continue
		}
		results = append(results, res)
		if err != nil {
			fmt.Fprintf(t.Out, "FAIL  %-80s %6s\n      %v\n", c.name, res.Duration.Round(100*time.Millisecond), err)
		} else {
			fmt.Fprintf(t.Out, "PASS  %-80s %6s\n", c.name, res.Duration.Round(100*time.Millisecond))
		}
		if ctx.Err() != nil {
			return results, ctx.Err()
		}
	}
	return results, nil
}
