// Package installer is kubeup-installer: the first program of a metal
// machine's network boot. The machine boots its role image's kernel and
// initrd from kubeup's boot server with this program appended to the
// initrd and started as the initramfs's init (rdinit=); it brings up the
// interface it booted from, streams the role image to the machine's disk
// (sha256 checked before the disk is made bootable), writes the machine's
// NoCloud seed onto the installed root filesystem, tells the server, and
// reboots into the installed system, which needs the server no more.
package installer
