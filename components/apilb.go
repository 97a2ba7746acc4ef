package components

import (
	"fmt"
	"strings"

	"kubeup.dev/kubeup/systemd"
)

// APILB is the API server load balancer on every machine's loopback
// (`kubeup-agent apilb` run from a copy of the agent, APILBBinary; package
// daemons/apilb; the idea of Talos' KubePrism): kubelet, kube-proxy, the agent and the addon manager reach the
// API through it, so a machine keeps its API while any one master is gone.
// The controller-manager and the scheduler keep their own master's API
// server (kubeadm's choice): they lead only while that one serves.
type APILB struct{}

// APILB addresses: 7445 is KubePrism's port; the metrics, health and status
// listener is loopback-only, served onwards by the agent.
const (
	APILBPort        = 7445
	APILBMetricsAddr = "127.0.0.1:7446"
	// APILBBinary is a copy of the agent's binary, not the same file: two
	// processes mapping one file share its pages, and the kernel then
	// cannot page out the agent's (MADV_PAGEOUT leaves shared pages), so
	// the agent's memory release stopped working. make e2e measured the
	// agents at 26.6 MB (master) and 20.8 MB (node) running apilb from
	// kubeup-agent itself, against 18.2 and 13.6 MB before. A binary of
	// its own, smaller than the agent, is the next step.
	APILBBinary = BinDir + "/kubeup-apilb"
)

// MachineAPIServer is the API server URL clients on a machine use: the
// load balancer. The API servers' certificates name 127.0.0.1.
func MachineAPIServer() string { return fmt.Sprintf("https://127.0.0.1:%d", APILBPort) }

func (APILB) Name() string        { return "kubeup-apilb" }
func (APILB) Description() string { return "kubeup API server load balancer" }
func (APILB) Roles() []Role       { return []Role{Master, Node} }

// Unit: ready once it listens (sd_notify). Before the API's clients, so
// that their first connection finds it. Sandboxed like the agent, with no
// capability at all: it only listens on loopback, dials the API servers and
// reads the agent's certificate (root's file) for its health checks.
func (a APILB) Unit(role Role) systemd.Unit {
	return service(a, role, APILBBinary+" apilb", systemd.Service{
		Documentation: []string{"https://www.talos.dev/v1.9/kubernetes-guides/configuration/kubeprism/"},
		Type:          "notify",
		Before:        []string{"kubelet.service", "kube-proxy.service", "kubeup-agent.service"},
		Limits:        map[string]string{"MemoryMax": "64M"},
		// One P, and no transparent huge pages: see the agent's unit.
		Environment:     map[string]string{"GODEBUG": "disablethp=1", "GOMAXPROCS": "1", "GOGC": "50"},
		NoNewPrivileges: true,
		ProtectSystem:   "strict",
		ProtectHome:     true,
		PrivateTmp:      true,
		Sandbox:         daemonSandbox([]string{}, "AF_UNIX", "AF_INET", "AF_INET6"),
	})
}

func (APILB) ImageFiles() []File { return nil }

// Flags: every master's API server, this master's own preferred.
func (APILB) Flags(ctx Context) Flags {
	var backends []string
	for _, m := range ctx.Cluster.Masters {
		backends = append(backends, fmt.Sprintf("%s:%d", m.IP, APIServerPort))
	}
	f := Flags{
		"listen":         fmt.Sprintf("127.0.0.1:%d", APILBPort),
		"backends":       strings.Join(backends, ","),
		"cacert":         pki("ca.crt"),
		"cert":           pki("kubeup-agent.crt"),
		"key":            pki("kubeup-agent.key"),
		"metrics-listen": APILBMetricsAddr,
	}
	if ctx.Machine.Role == Master {
		f["prefer"] = fmt.Sprintf("%s:%d", ctx.Machine.IP, APIServerPort)
	}
	return f
}

func (APILB) Files(Context) ([]File, error) { return nil, nil }

func (APILB) Health() Endpoint {
	return Endpoint{URL: "http://" + APILBMetricsAddr + "/healthz", Auth: AuthNone}
}

// Metrics are on a loopback-only listener; the agent serves them onwards.
func (APILB) Metrics() *Endpoint {
	return &Endpoint{URL: "http://" + APILBMetricsAddr + "/metrics", Auth: AuthNone}
}

func (APILB) Certificates(Role) []string { return []string{"kubernetes-ca", "kubeup-agent"} }
