package components

import (
	"fmt"
	"time"

	"github.com/pelletier/go-toml/v2"

	"kubeup.dev/kubeup/systemd"
)

// Containerd is the container runtime: containerd 2 with the runc shim, CNI
// plugins in /opt/cni/bin and the CRI plugin kubelet talks to.
type Containerd struct{}

// Containerd paths and addresses.
const (
	ContainerdConfigPath = "/etc/containerd/config.toml"
	ContainerdSocket     = "/run/containerd/containerd.sock"
	// ContainerdMetricsAddr is plain HTTP, so it listens on loopback only;
	// the node agent serves it onwards over TLS.
	ContainerdMetricsAddr = "127.0.0.1:1338"
	RuncPath              = "/usr/local/sbin/runc"
	CNIBinDir             = "/opt/cni/bin"
	CNIConfDir            = "/etc/cni/net.d"
	// ContainerdHostsDir is the CRI plugin's registry host configuration
	// (hosts.toml per registry; _default for every registry without its
	// own directory).
	ContainerdHostsDir = "/etc/containerd/certs.d"
)

func (Containerd) Name() string        { return "containerd" }
func (Containerd) Description() string { return "containerd container runtime" }
func (Containerd) Roles() []Role       { return []Role{Master, Node} }

// Unit follows containerd's own unit: it manages its shims' cgroups
// (Delegate, KillMode=process keeps containers alive across a restart).
func (c Containerd) Unit(role Role) systemd.Unit {
	s := systemd.Service{
		Documentation:   []string{"https://containerd.io/docs/"},
		Before:          []string{"kubelet.service"},
		Type:            "notify",
		ExecStartPre:    []string{"-/sbin/modprobe overlay"},
		Delegate:        true,
		KillMode:        "process",
		OOMScoreAdjust:  -999,
		TimeoutStartSec: 2 * time.Minute,
		Environment:     oneProcessor(),
		Limits:          map[string]string{"LimitNPROC": "infinity", "LimitCORE": "infinity", "LimitNOFILE": "infinity", "TasksMax": "infinity"},
	}
	if role == Master {
		inControlPlane(&s)
	}
	return service(c, role, BinDir+"/containerd", s)
}

// ImageFiles are the kernel modules and sysctls containers and Services
// need, and the registry mirror every pull tries first.
func (Containerd) ImageFiles() []File {
	return []File{
		{Path: ContainerdHostsDir + "/_default/hosts.toml", Mode: 0o644, Content: []byte(`# Every registry, rendered by kubeup: first this machine's own images,
# served by kubeup-agent's read-only registry mirror, then the registry
# itself. An image the machine already holds (the image's preloaded
# addons, what "kubeup images load" put there) is "pulled" from the
# machine, so imagePullPolicy Always works on an air-gapped machine.
[host."http://` + AgentRegistryMirrorAddr + `"]
  capabilities = ["pull", "resolve"]
`)},
		{Path: "/etc/modules-load.d/kubeup.conf", Mode: 0o644, Content: []byte("# Loaded at boot for kubeup: container layers and bridged pod traffic.\noverlay\nbr_netfilter\n")},
		{Path: "/etc/sysctl.d/90-kubeup.conf", Mode: 0o644, Content: []byte(`# Set at boot for kubeup.
net.ipv4.ip_forward = 1
net.bridge.bridge-nf-call-iptables = 1
net.bridge.bridge-nf-call-ip6tables = 1
fs.inotify.max_user_instances = 8192
fs.inotify.max_user_watches = 524288
`)},
		{Path: "/usr/lib/tmpfiles.d/kubeup.conf", Mode: 0o644, Content: []byte(`# Directories kubeup's components expect.
d /etc/kubernetes/manifests 0755 root root -
d /etc/cni/net.d 0755 root root -
d /var/lib/kubelet 0700 root root -
d /var/lib/etcd 0700 root root -
d /var/lib/kubeup-agent 0700 root root -
`)},
	}
}

func (Containerd) Flags(Context) Flags {
	return Flags{"config": ContainerdConfigPath}
}

// Files is containerd's config (version 3, containerd 2.x): the CRI plugin
// with runc under systemd cgroups, CNI, the preloaded pause image pinned
// as the sandbox image so the kubelet never pulls it, and registry hosts
// from ContainerdHostsDir (the agent's mirror first).
func (Containerd) Files(ctx Context) ([]File, error) {
	cfg := map[string]any{
		"version": 3,
		"root":    "/var/lib/containerd",
		"state":   "/run/containerd",
		"grpc":    map[string]any{"address": ContainerdSocket},
		"metrics": map[string]any{"address": ContainerdMetricsAddr},
		"plugins": map[string]any{
			"io.containerd.cri.v1.images": map[string]any{
				"snapshotter":   "overlayfs",
				"pinned_images": map[string]any{"sandbox": ctx.Cluster.Images.Pause},
				"registry":      map[string]any{"config_path": ContainerdHostsDir},
			},
			"io.containerd.cri.v1.runtime": map[string]any{
				"containerd": map[string]any{
					"default_runtime_name": "runc",
					"runtimes": map[string]any{
						"runc": map[string]any{
							"runtime_type": "io.containerd.runc.v2",
							"options":      map[string]any{"BinaryName": RuncPath, "SystemdCgroup": true},
						},
					},
				},
				"cni": map[string]any{"bin_dirs": []string{CNIBinDir}, "conf_dir": CNIConfDir},
			},
		},
	}
	data, err := toml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("containerd config: %w", err)
	}
	header := []byte("# containerd configuration, rendered by kubeup.\n")
	return []File{{Path: ContainerdConfigPath, Mode: 0o644, Content: append(header, data...)}}, nil
}

// Health is containerd's gRPC health service on its socket.
func (Containerd) Health() Endpoint {
	return Endpoint{URL: "unix://" + ContainerdSocket, Auth: AuthNone}
}

func (Containerd) Metrics() *Endpoint {
	return &Endpoint{URL: "http://" + ContainerdMetricsAddr + "/v1/metrics", Auth: AuthNone}
}

func (Containerd) Certificates(Role) []string { return nil }
