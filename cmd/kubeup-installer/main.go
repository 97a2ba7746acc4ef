// Command kubeup-installer installs a metal machine's role image to its
// disk: it runs as the init of the initrd the boot server serves (see
// daemons/installer), and nowhere else.
package main

import (
	"fmt"
	"os"

	"kubeup.dev/kubeup/daemons/installer"
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, "kubeup-installer runs as the init of a metal machine's network boot (rdinit=/kubeup-installer), not by hand")
		os.Exit(2)
	}
	installer.Main()
}
