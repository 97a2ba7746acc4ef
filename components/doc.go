// Package components is kubeup's catalogue of the Kubernetes components a
// machine runs: each is typed data with pure render functions for its flags,
// config files, systemd unit, health and metrics endpoints and the
// certificates it reads.
//
// The split between what is in the image and what cloud-init writes is the
// point of the design: Unit and ImageFiles depend on nothing but the role, so
// one image serves every cluster; Flags and Files depend on the cluster and
// the machine, and reach the machine as user-data.
package components
