// Package preload puts container images into an image root's containerd
// store at build time, so that a machine's first pod starts without any
// registry: it runs the image's own containerd against the root's
// /var/lib/containerd and imports OCI/docker-archive tarballs with
// containerd's Go client, unpacked for the overlayfs snapshotter the CRI
// plugin uses, labelled as CRI-managed and pinned (never garbage-collected).
package preload
