// Package disk assembles a bootable disk image from a root filesystem tree:
// an ext4 root filesystem (mkfs.ext4 -d, nothing mounted), an EFI system
// partition carrying the kernel and initrd with systemd-boot for UEFI and
// SYSLINUX for BIOS, and a GPT whose protective MBR boots SYSLINUX. The disk
// boots by firmware alone, by UEFI (OVMF) or legacy BIOS (SeaBIOS), and
// finds its root by filesystem label.
package disk
