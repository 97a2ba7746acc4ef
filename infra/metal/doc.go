// Package metal serves the network boot of the metal target: iPXE scripts
// chosen by MAC, each role image's kernel and initrd (with kubeup-installer
// appended), the role image itself (zstd, with its sha256 on the kernel
// command line, checked before the disk is made bootable), each machine's
// NoCloud seed to that machine only, and, for firmware whose PXE is not
// iPXE, iPXE itself over TFTP. It follows every machine's progress through
// the installers' reports.
//
// Nothing here is authenticated: PXE, TFTP and HTTP cannot be. What limits
// the exposure: a seed is served only to a request from the machine's own
// MAC (the server's neighbour table must map the request's source address
// to it) carrying the machine's token, which only that MAC's iPXE script
// holds; a machine's seed is refused once it reports installed; and the
// server runs only until every machine is installed and the cluster is up.
package metal
