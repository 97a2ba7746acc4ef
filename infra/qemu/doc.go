// Package qemu runs kubeup's machines as QEMU virtual machines on this host:
// a copy-on-write overlay over a role image, a NoCloud seed, a NIC on the
// cluster's L2 segment (a vde_switch on a unix socket, so machine-to-machine
// traffic never touches the host's IP stack) and a management NIC (QEMU user
// networking, restricted: no way out) whose port forwards on 127.0.0.1 are
// how the host reaches the machine. VMs run detached (-daemonize) and are
// found again, and stopped, by the PID in their pidfile.
//
// It does not import Pulumi: the Pulumi provider (infra/provider) and the
// image tests both use it.
package qemu
