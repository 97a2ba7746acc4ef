package components

import (
	"fmt"
	"maps"

	"kubeup.dev/kubeup/systemd"
)

// ControllerManager is kube-controller-manager with the default controllers
// (node lifecycle and IPAM, replication, endpoints, service accounts and
// their tokens, CSR signing and approving) plus the bootstrap-token
// controllers, which are off by default and which TLS bootstrapping needs.
type ControllerManager struct{}

// ControllerManagerPort is its secure port.
const ControllerManagerPort = 10257

func (ControllerManager) Name() string { return "kube-controller-manager" }
func (ControllerManager) Description() string {
	return "Kubernetes controller manager"
}
func (ControllerManager) Roles() []Role { return []Role{Master} }

func (c ControllerManager) Unit(role Role) systemd.Unit {
	s := systemd.Service{
		Documentation:   []string{"https://kubernetes.io/docs/reference/command-line-tools-reference/kube-controller-manager/"},
		Wants:           []string{"kube-apiserver.service"},
		After:           []string{"kube-apiserver.service"},
		ExecStartPost:   []string{probe(c.Health(), "--cacert="+pki("ca.crt"))},
		TimeoutStartSec: probedStartTimeout,
		Environment:     oneProcessor(),
	}
	controlPlaneHardening(&s)
	inControlPlane(&s)
	return service(c, role, BinDir+"/kube-controller-manager", s)
}

func (ControllerManager) ImageFiles() []File { return nil }

func (ControllerManager) Flags(ctx Context) Flags {
	c := ctx.Cluster
	f := Flags{
		"kubeconfig":                       ControllerManagerKubeconfig,
		"authentication-kubeconfig":        ControllerManagerKubeconfig,
		"authorization-kubeconfig":         ControllerManagerKubeconfig,
		"bind-address":                     "0.0.0.0",
		"secure-port":                      fmt.Sprint(ControllerManagerPort),
		"tls-cert-file":                    pki("controller-manager.crt"),
		"tls-private-key-file":             pki("controller-manager.key"),
		"client-ca-file":                   pki("ca.crt"),
		"requestheader-client-ca-file":     pki("front-proxy-ca.crt"),
		"controllers":                      "*,bootstrapsigner,tokencleaner",
		"use-service-account-credentials":  "true",
		"service-account-private-key-file": pki("sa.key"),
		"root-ca-file":                     pki("ca.crt"),
		"cluster-signing-cert-file":        pki("ca.crt"),
		"cluster-signing-key-file":         pki("ca.key"),
		"cluster-name":                     c.Name,
		"allocate-node-cidrs":              "true",
		"cluster-cidr":                     c.PodCIDR.String(),
		"node-cidr-mask-size":              fmt.Sprint(c.NodeCIDRMaskSize),
		"service-cluster-ip-range":         c.ServiceCIDR.String(),
		"leader-elect":                     fmt.Sprint(c.leaderElect()),
		"profiling":                        "false",
		// Terminated pods are garbage-collected past this many, not
		// upstream's 12,500 (CIS 1.3.1): a small cluster's etcd and
		// API server should not carry thousands of finished pods.
		"terminated-pod-gc-threshold": "1000",
		"disabled-metrics":            featureEnabledMetric,
	}
	if len(c.PodCIDRs) > 0 {
		// Fixed per machine (the cloud routes to them); the addon manager
		// sets them on the Nodes.
		f["allocate-node-cidrs"] = "false"
	}
	maps.Copy(f, tlsFlags())
	// Kubelets' client and serving certificates, which it signs from
	// CSRs, last as long as every other leaf (a CSR may ask for less).
	f["cluster-signing-duration"] = c.LeafLifetime.String()
	if c.leaderElect() {
		f["leader-elect-lease-duration"] = leaseDuration.String()
		f["leader-elect-renew-deadline"] = renewDeadline.String()
		f["leader-elect-retry-period"] = retryPeriod.String()
	}
	return f
}

func (ControllerManager) Files(ctx Context) ([]File, error) {
	kc, err := certKubeconfig(ctx.Cluster.Name, localAPIServer(), "system:kube-controller-manager",
		pki("controller-manager-client.crt"), pki("controller-manager-client.key"))
	if err != nil {
		return nil, err
	}
	return []File{{Path: ControllerManagerKubeconfig, Mode: 0o600, Content: kc}}, nil
}

// Health is served without credentials (always-allowed paths), over TLS
// with a serving certificate from the cluster CA.
func (ControllerManager) Health() Endpoint {
	return Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/healthz", ControllerManagerPort), Auth: AuthNone}
}

func (ControllerManager) Metrics() *Endpoint {
	return &Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/metrics", ControllerManagerPort), Auth: AuthBearer}
}

func (ControllerManager) Certificates(Role) []string {
	return []string{"kubernetes-ca", "front-proxy-ca", "service-account", "controller-manager-client", "controller-manager-server"}
}
