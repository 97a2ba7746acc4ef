// Package provider is kubeup's Pulumi resource provider for machines on this
// host (the plugin binary pulumi-resource-kubeup). It is written on the
// Pulumi SDK's provider interface alone:
//
//	kubeup:local:Switch   a vde_switch: the cluster's L2 network, inside QEMU
//	kubeup:local:Machine  a QEMU VM over a role image, with a NoCloud seed
//
// Create starts the process detached (it outlives the plugin); Read reports
// whether it still runs (a VM that died is gone, and the next `up` creates
// it again); Delete stops it by PID and removes its files; Diff replaces a
// resource whose inputs changed, deleting the old one first (it holds the
// ports and the name).
package provider
