package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/daemons/installer"
	"kubeup.dev/kubeup/images/build"
	"kubeup.dev/kubeup/images/disk"
	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/render"
)

// MetalDiskOptions say where a machine's boot disk goes.
type MetalDiskOptions struct {
	Machine string
	// Out is a file (written through a temporary file and a rename);
	// with Device it is a block device, checked by disk.CheckWritableDisk.
	Out    string
	Device bool
	// Confirmed: the user said --yes (a device is only written then).
	Confirmed bool
}

// MetalDisk writes one metal machine's boot disk: its role's image with
// the machine's NoCloud seed on the root filesystem, so that it boots with
// nothing else attached and no server. It uses (or makes) the cluster's
// PKI and state as `up` does, so `up` with the same config then waits for
// the machine instead of serving its boot. It returns what it wrote.
func MetalDisk(ctx context.Context, c *config.Cluster, o Options, d MetalDiskOptions) (string, error) {
	o.defaults()
	if c.Spec.Target.Provider != config.ProviderMetal {
		return "", fmt.Errorf("spec.target.provider is %q: boot disks are for the metal target", c.Spec.Target.Provider)
	}
	m, ok := c.Machine(d.Machine)
	if !ok {
		var names []string
		for _, m := range c.Machines() {
			names = append(names, m.Name)
		}
		return "", fmt.Errorf("--machine %q is not in spec.target.metal.machines (%s)", d.Machine, strings.Join(names, ", "))
	}
	var dev disk.Device
	if d.Device {
		var err error
		if dev, err = disk.CheckWritableDisk(d.Out, "/sys", "/proc/self/mountinfo", "/proc/swaps"); err != nil {
			return "", err
		}
		if !d.Confirmed {
			return "", fmt.Errorf("this would overwrite all of %s with %s's boot disk: add --yes", dev, m.Name)
		}
	}
	u := &bringUp{cfg: c, opts: o, dir: Dir(o.DataDir, c.Metadata.Name), imageFormat: "raw"}
	u.timings = newTimings(c.Metadata.Name, len(c.Machines()), o.Progress)
	steps := metalSteps()[:4] // images, state, PKI, render
	if err := runSteps(ctx, u, steps); err != nil {
		return "", err
	}
	i := slices.IndexFunc(u.render.Machines, func(r render.Machine) bool { return r.Name == m.Name })
	rm := u.render.Machines[i]
	seed := map[string][]byte{"meta-data": rm.MetaData, "user-data": rm.UserData, "network-config": rm.NetworkConfig}
	img := u.images[components.Role(rm.Role)]
	start := time.Now()
	if !d.Device {
		tmp := filepath.Join(filepath.Dir(d.Out), "."+filepath.Base(d.Out)+".tmp")
		defer os.Remove(tmp)
		if err := disk.CopySparse(img, tmp); err != nil {
			return "", err
		}
		if err := disk.WriteSeed(ctx, tmp, seed); err != nil {
			return "", err
		}
		if err := os.Chmod(tmp, 0o600); err != nil { // a master's holds the cluster's keys
			return "", err
		}
		if err := os.Rename(tmp, d.Out); err != nil {
			return "", err
		}
		fi, _ := os.Stat(d.Out)
		if err := u.diskInstalled(m.MAC); err != nil {
			return "", err
		}
		return fmt.Sprintf("%s: %s's boot disk (%s), %d MiB, in %s; up will not serve its network boot", d.Out, m.Name, m.Role, fi.Size()>>20, time.Since(start).Round(time.Second)), nil
	}
	sum, size, err := rawDigest(img)
	if err != nil {
		return "", err
	}
	if size > dev.Bytes {
		return "", fmt.Errorf("%s is smaller than the %d MiB image", dev, size>>20)
	}
	in, err := os.Open(img)
	if err != nil {
		return "", err
	}
	defer in.Close()
	f, err := os.OpenFile(d.Out, os.O_WRONLY|os.O_EXCL, 0)
	if err != nil {
		return "", err
	}
	progress := func(n int64) {
		fmt.Fprintf(o.Progress, "  %s: %d of %d MiB written, %s\n", d.Out, n>>20, size>>20, time.Since(start).Round(time.Second))
	}
	werr := installer.WriteImage(f, in, size, sum, 10*time.Second, progress)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", werr
	}
	if err := disk.WriteSeed(ctx, d.Out, seed); err != nil {
		return "", err
	}
	if err := u.diskInstalled(m.MAC); err != nil {
		return "", err
	}
	return fmt.Sprintf("%s: %s's boot disk (%s), %d MiB written and checked, in %s; up will not serve its network boot", dev, m.Name, m.Role, size>>20, time.Since(start).Round(time.Second)), nil
}

// diskInstalled records that a machine has its boot disk: up waits for it
// to join instead of for its network install, and the boot server tells
// it to boot from its disk should it boot from the network.
func (u *bringUp) diskInstalled(mac string) error {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	u.state.Installed[hw.String()] = time.Now().UTC()
	return u.state.save(u.dir)
}

// rawDigest is the sha256 and size of a raw image, from its build manifest.
func rawDigest(img string) (string, int64, error) {
	data, err := os.ReadFile(strings.TrimSuffix(img, ".raw") + ".json")
	if err != nil {
		return "", 0, fmt.Errorf("the image's manifest: %w", err)
	}
	var m build.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return "", 0, err
	}
	for _, f := range m.Files {
		if f.Format == "raw" {
			return f.SHA256, f.Size, nil
		}
	}
	return "", 0, fmt.Errorf("%s: its manifest lists no raw file", img)
}
