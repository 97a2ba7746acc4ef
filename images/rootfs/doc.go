// Package rootfs makes the root filesystem of kubeup's images: a base layer
// of Debian bookworm packages installed by mmdebstrap (cached by its
// inputs), unpacked into a staging tree that is then trimmed and configured
// as an appliance.
package rootfs
