package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/daemons/agent"
)

// HostRootPod is the pod that is root on its machine if admitted: privileged,
// in the host's PID and network namespaces, with the host's / mounted
// (`chroot /host` gives a root shell, the CA key in reach). Pod Security's
// baseline level refuses it.
func HostRootPod(namespace, image string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "host-root", Namespace: namespace},
		Spec: corev1.PodSpec{
			HostPID:     true,
			HostNetwork: true,
			Containers: []corev1.Container{{
				Name: "shell", Image: image, Command: []string{"/bin/busybox", "sleep", "3600"},
				SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
				VolumeMounts:    []corev1.VolumeMount{{Name: "host", MountPath: "/host"}},
			}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}},
		},
	}
}

// Ports the kernel hands out for port 0 (Linux's default
// ip_local_port_range): a listener there has no fixed port to review.
const ephemeralLow, ephemeralHigh = 32768, 60999

// listenerOwners name who listens on a port, for the reviewed lists.
var listenerOwners = map[string]string{
	"tcp 22":        "sshd (spec.ssh.authorizedKeys)",
	"tcp 53":        "systemd-resolved (stub)",
	"udp 53":        "systemd-resolved (stub)",
	"udp 68":        "systemd-networkd (DHCP client of the management NIC)",
	"tcp 1338":      "containerd (metrics)",
	"tcp 2379":      "etcd (clients)",
	"tcp 2380":      "etcd (peers)",
	"tcp 2381":      "etcd (metrics)",
	"tcp 6443":      "kube-apiserver",
	"tcp 7445":      "kubeup-apilb (the machine's API endpoint)",
	"tcp 7446":      "kubeup-apilb (metrics, health)",
	"tcp 10248":     "kubelet (healthz)",
	"tcp 10249":     "kube-proxy (metrics)",
	"tcp 10250":     "kubelet",
	"tcp 10256":     "kube-proxy (healthz)",
	"tcp 10257":     "kube-controller-manager",
	"tcp 10259":     "kube-scheduler",
	"tcp 10290":     "kubeup-agent",
	"tcp 10291":     "kubeup-addon-manager",
	"tcp 10292":     "kubeup-agent (registry mirror of the machine's images)",
	"tcp ephemeral": "containerd (CRI streaming: exec, attach, port-forward)",
}

// SocketLines is a machine's listening sockets as its role's reviewed list
// has them: the machine's own address as MACHINE_IP, a loopback port from
// the ephemeral range as "ephemeral", and who listens there.
func SocketLines(socks []agent.Socket, machineIP netip.Addr) []string {
	var out []string
	for _, s := range socks {
		host := s.Address.Addr().String()
		if s.Address.Addr() == machineIP {
			host = "MACHINE_IP"
		}
		if s.Address.Addr().Is6() {
			host = "[" + host + "]"
		}
		port := strconv.Itoa(int(s.Address.Port()))
		if p := int(s.Address.Port()); s.Address.Addr().IsLoopback() && p >= ephemeralLow && p <= ephemeralHigh {
			port = "ephemeral"
		}
		owner, ok := listenerOwners[s.Proto+" "+port]
		if !ok {
			owner = "? (new: who is this?)"
		}
		out = append(out, fmt.Sprintf("%-4s %-24s %s", s.Proto, host+":"+port, owner))
	}
	slices.Sort(out)
	return out
}

// SocketsGolden is the reviewed list's file content for a role.
func SocketsGolden(role string, lines []string) []byte {
	return []byte(fmt.Sprintf("# Listening sockets of every %s of the e2e cluster (test/e2e, from the agent's\n"+
		"# /v1/sockets). Review every change: a new line is a new listener.\n%s\n", role, strings.Join(lines, "\n")))
}
