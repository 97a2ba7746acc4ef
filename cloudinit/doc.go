// Package cloudinit models the parts of cloud-init that kubeup uses and renders them as the files cloud-init reads:
// user-data (a #cloud-config document), meta-data and a version 2 network-config. It also applies per-cloud size
// limits to user-data (Encode) and writes NoCloud seed ISOs (WriteSeed).
//
// The package knows nothing about Kubernetes: callers build a typed Config and this package only renders it.
// Everything is rendered by marshalling typed structs, never by text templates, so output is deterministic and
// correctly quoted whatever the content.
package cloudinit
