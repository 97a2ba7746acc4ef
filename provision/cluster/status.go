package cluster

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/infra/cloud/leftovers"
	"kubeup.dev/kubeup/provision/health"
	"kubeup.dev/kubeup/provision/pki"
)

// MachineStatus is one machine as `kubeup status` shows it.
type MachineStatus struct {
	Name    string                  `json:"name"`
	Role    string                  `json:"role"`
	IP      string                  `json:"ip"`
	VM      string                  `json:"vm"` // running (pid N) | stopped | instance <state> (clouds)
	Node    string                  `json:"node"`
	Units   []agent.UnitStatus      `json:"units,omitempty"`
	Agent   string                  `json:"agentError,omitempty"`
	Network *agent.PodNetworkStatus `json:"podNetwork,omitempty"`
}

// LoadBundle reads a cluster's PKI.
func LoadBundle(dataDir, name string) (*pki.Bundle, error) {
	return pki.Load(filepath.Join(Dir(dataDir, name), pkiDir))
}

// Kubeconfig returns the admin kubeconfig `up` wrote.
func Kubeconfig(dataDir, name string) (string, []byte, error) {
	path := filepath.Join(Dir(dataDir, name), kubeconfigFile)
	data, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return path, nil, fmt.Errorf("%w %q (kubeup up --name %s creates it)", ErrNotFound, name, name)
	}
	return path, data, err
}

// Status reports every machine: its VM, its Node condition and its units.
func Status(ctx context.Context, dataDir, name string) ([]MachineStatus, error) {
	st, err := LoadState(dataDir, name)
	if err != nil {
		return nil, err
	}
	b, err := LoadBundle(dataDir, name)
	if err != nil {
		return nil, err
	}
	nodes := map[string]corev1.Node{}
	nodeErr := ""
	if _, kc, err := Kubeconfig(dataDir, name); err == nil {
		if cs, err := health.Clientset(kc); err == nil {
			lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			list, err := cs.CoreV1().Nodes().List(lctx, metav1.ListOptions{})
			cancel()
			if err != nil {
				nodeErr = "API unreachable"
			} else {
				for _, n := range list.Items {
					nodes[n.Name] = n
				}
			}
		}
	}
	// On a cloud the instances' states come from the cloud's API.
	var instances map[string]string
	instErr := ""
	target, _ := targetOf(st)
	if target != nil {
		if instances, err = cloudInstances(ctx, target, st.Name); err != nil {
			instErr = err.Error()
		}
	}
	var out []MachineStatus
	for _, m := range st.Machines {
		ms := MachineStatus{Name: m.Name, Role: string(m.Role), IP: m.IP, VM: "stopped", Node: "not registered"}
		if nodeErr != "" {
			ms.Node = nodeErr
		}
		if n, ok := nodes[m.Name]; ok {
			ms.Node = "NotReady"
			for _, c := range n.Status.Conditions {
				if c.Type == corev1.NodeReady {
					ms.Node = "Ready=" + string(c.Status)
					if c.Status == corev1.ConditionTrue {
						ms.Node = "Ready"
					}
				}
			}
		}
		running := false
		if target != nil {
			ms.VM, running = cloudVM(instances, instErr, m.Name)
			// Its agent is reached through the API server.
			running = running && nodeErr == ""
		} else if pid, ok := LocalVM(dataDir, name, m.Name).Running(); ok {
			ms.VM, running = fmt.Sprintf("running (pid %d)", pid), true
		}
		if running {
			if c, err := AgentClient(ctx, st, m, b); err != nil {
				ms.Agent = err.Error()
			} else {
				actx, cancel := context.WithTimeout(ctx, 10*time.Second)
				s, err := c.Status(actx)
				cancel()
				if err != nil {
					ms.Agent = err.Error()
				} else {
					ms.Units = s.Units
					ms.Network = &s.PodNetwork
				}
			}
		}
		out = append(out, ms)
	}
	return out, nil
}

// cloudInstances reads the cluster's instances' states from its cloud.
func cloudInstances(ctx context.Context, target cloudTarget, cluster string) (map[string]string, error) {
	l, err := target.lister(ctx)
	if err != nil {
		return nil, err
	}
	il, ok := l.(leftovers.InstanceLister)
	if !ok {
		return nil, fmt.Errorf("%s: no instance listing", target.provider())
	}
	ictx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return il.Instances(ictx, cluster)
}

// cloudVM is a cloud machine's VM column and whether it runs.
func cloudVM(instances map[string]string, listErr, machine string) (string, bool) {
	if listErr != "" {
		return "instance state unknown: " + listErr, true
	}
	state, ok := instances[machine]
	if !ok {
		return "no instance", false
	}
	return "instance " + state, strings.EqualFold(state, "running")
}
