package disk

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/diskfs/go-diskfs/partition/gpt"
)

// espPartition is the byte offset of a disk's EFI system partition.
func espPartition(disk string) (int64, error) {
	f, err := os.Open(disk)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	table, err := gpt.Read(f, 512, 512)
	if err != nil {
		return 0, fmt.Errorf("%s: no GPT partition table: %w", disk, err)
	}
	for _, p := range table.Partitions {
		if strings.EqualFold(string(p.Type), espType) {
			return int64(p.Start) * 512, nil
		}
	}
	return 0, fmt.Errorf("%s: no EFI system partition: not a kubeup image", disk)
}

// ExtractBoot copies the kernel and the initrd both boot loaders start out
// of a disk Build made (for a network boot of the same system) to kernel
// and initrd, and returns the kernel command line of the disk's boot entry.
func ExtractBoot(ctx context.Context, disk, kernel, initrd string) (cmdline string, err error) {
	off, err := espPartition(disk)
	if err != nil {
		return "", err
	}
	esp := fmt.Sprintf("%s@@%d", disk, off)
	env := append(os.Environ(), "MTOOLS_SKIP_CHECK=1")
	for src, dst := range map[string]string{"::/vmlinuz": kernel, "::/initrd.img": initrd} {
		if err := run(ctx, env, "mcopy", "-o", "-n", "-i", esp, src, dst); err != nil {
			return "", fmt.Errorf("copy %s out of %s: %w", strings.TrimPrefix(src, "::"), disk, err)
		}
	}
	entry, _, err := output(ctx, "mtype", "-i", esp, "::/loader/entries/kubeup.conf")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(entry), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "options "); ok {
			return strings.TrimSpace(rest), nil
		}
	}
	return "", fmt.Errorf("%s: the boot entry has no options line", disk)
}
