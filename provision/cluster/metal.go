package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/infra/metal"
	"kubeup.dev/kubeup/provision/config"
)

// metalSteps is the bring-up of a metal cluster: kubeup serves the network
// boot; each machine installs its role's image to its disk and boots from
// it; then the same waits as everywhere.
func metalSteps() []step {
	return []step{
		{name: "images ready", run: ensureImages},
		{name: "cluster state", run: prepareMetalState},
		{name: "cluster PKI", run: loadPKI},
		{name: "rendered machine configs", run: renderMachines},
		{name: "network boot assets", run: prepareMetalAssets},
		{name: "boot server serving", run: startBootServer},
		{name: "machines installed", run: waitInstalled},
		{name: "API server healthy", run: waitAPIServer, wait: true},
		{name: "all nodes Ready", run: waitNodes, wait: true},
		{name: "kube-system pods Ready", run: waitSystemPods, wait: true},
	}
}

// IPXEFiles are Debian's iPXE builds (package ipxe) the boot server offers
// over TFTP and HTTP to firmware that must chain-load iPXE.
var IPXEFiles = map[string]string{
	"ipxe.efi":      "/usr/lib/ipxe/ipxe.efi",
	"snponly.efi":   "/usr/lib/ipxe/snponly.efi",
	"undionly.kpxe": "/usr/lib/ipxe/undionly.kpxe",
}

// metalBoot is a running boot server.
type metalBoot struct {
	server *metal.Server
	url    string
	stop   context.CancelFunc
	done   chan error
	assets map[string]*metal.RoleAssets
}

// prepareMetalState keeps the machines' install record across runs and
// reaches the API server and agents at the machines' own addresses.
func prepareMetalState(_ context.Context, u *bringUp) (string, error) {
	c := u.cfg
	st, err := LoadState(u.opts.DataDir, c.Metadata.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		st = &State{Name: c.Metadata.Name, Provider: config.ProviderMetal, Created: time.Now().UTC()}
	case err != nil:
		return "", err
	case st.Provider != config.ProviderMetal:
		return "", fmt.Errorf("cluster %q exists on the %s target: kubeup down --name %s first, or name this one differently", st.Name, st.Provider, st.Name)
	}
	st.APIServerPort = components.APIServerPort
	st.APIEndpoint = fmt.Sprintf("https://%s", net.JoinHostPort(c.Spec.Target.Metal.APIEndpoint, strconv.Itoa(components.APIServerPort)))
	st.Machines = nil
	for _, m := range c.Machines() {
		st.Machines = append(st.Machines, MachineState{Name: m.Name, Role: m.Role, IP: m.IP.String(), MAC: m.MAC})
	}
	if st.Installed == nil {
		st.Installed = map[string]time.Time{}
	}
	u.state = st
	return "", st.save(u.dir)
}

// prepareMetalAssets makes each role's kernel, initrd with the installer,
// and compressed image (cached by content).
func prepareMetalAssets(ctx context.Context, u *bringUp) (string, error) {
	installer := filepath.Join(u.opts.BinDir, "kubeup-installer")
	if _, err := os.Stat(installer); err != nil {
		return "", fmt.Errorf("the metal installer (make build writes bin/kubeup-installer): %w", err)
	}
	u.metal = &metalBoot{assets: map[string]*metal.RoleAssets{}}
	for role, img := range u.images {
		a, err := metal.PrepareAssets(ctx, u.opts.CacheDir, img, installer, u.opts.Progress)
		if err != nil {
			return "", fmt.Errorf("%s: %w", role, err)
		}
		u.metal.assets[string(role)] = a
	}
	return "", nil
}

// startBootServer serves the network boot on spec.target.metal.server
// until the bring-up ends (or, with KeepServing, until ctx does).
func startBootServer(_ context.Context, u *bringUp) (string, error) {
	mt := u.cfg.Spec.Target.Metal
	prefix := netip.MustParsePrefix(u.cfg.Spec.Network.MachineCIDR)
	gateway, _ := netip.ParseAddr(mt.Gateway)
	var machines []metal.Machine
	for _, m := range u.render.Machines {
		hw, err := net.ParseMAC(m.MAC)
		if err != nil {
			return "", fmt.Errorf("%s: %w", m.Name, err)
		}
		machines = append(machines, metal.Machine{
			Name: m.Name, Role: string(m.Role), MAC: hw, Address: netip.PrefixFrom(m.IP, prefix.Bits()), Gateway: gateway, Disk: m.Disk,
			Seed: map[string][]byte{"meta-data": m.MetaData, "user-data": m.UserData, "network-config": m.NetworkConfig},
		})
	}
	ipxe := map[string]string{}
	for name, path := range IPXEFiles {
		if _, err := os.Stat(path); err == nil {
			ipxe[name] = path
		}
	}
	var mu sync.Mutex
	url := "http://" + mt.ServerAddr()
	srv, err := metal.New(metal.Options{
		URL: url, Assets: u.metal.assets, Machines: machines, Installed: u.state.Installed, Progress: u.opts.Progress, IPXE: ipxe,
		OnInstalled: func(mac string, at time.Time) {
			mu.Lock()
			defer mu.Unlock()
			u.state.Installed[mac] = at
			if err := u.state.save(u.dir); err != nil {
				fmt.Fprintf(u.opts.Progress, "  metal: save the install of %s: %v\n", mac, err)
			}
		},
	})
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", mt.ServerAddr())
	if err != nil {
		return "", fmt.Errorf("boot server: %w (spec.target.metal.server must be an address of this host)", err)
	}
	sctx, stop := context.WithCancel(context.Background())
	u.metal.server, u.metal.url, u.metal.stop, u.metal.done = srv, url, stop, make(chan error, 1)
	go func() { u.metal.done <- srv.ServeListener(sctx, ln) }()
	// TFTP (port 69) for firmware that must chain-load iPXE: served when
	// the port is free; a network whose own TFTP server does it needs none.
	host, _, _ := net.SplitHostPort(mt.ServerAddr())
	if len(ipxe) == 0 {
		fmt.Fprintf(u.opts.Progress, "  metal: no iPXE binaries in /usr/lib/ipxe (Debian package ipxe): TFTP chain-loading is not offered\n")
	} else if pc, err := net.ListenPacket("udp", net.JoinHostPort(host, "69")); err != nil {
		fmt.Fprintf(u.opts.Progress, "  metal: TFTP not served (%v): firmware that is not iPXE must get iPXE from your TFTP server\n", err)
	} else {
		go func() { _ = srv.ServeTFTP(sctx, pc) }()
		fmt.Fprintf(u.opts.Progress, "  metal: TFTP serves iPXE on %s:69 (undionly.kpxe for BIOS, ipxe.efi for UEFI)\n", host)
	}
	if mt.ProxyDHCP {
		p, err := srv.ListenProxyDHCP()
		if err != nil {
			stop()
			<-u.metal.done
			u.metal.stop = nil
			return "", fmt.Errorf("spec.target.metal.proxyDHCP: %w", err)
		}
		go func() {
			if err := p.Serve(sctx); err != nil {
				fmt.Fprintf(u.opts.Progress, "  metal: proxyDHCP stopped: %v\n", err)
			}
		}()
		fmt.Fprintf(u.opts.Progress, "  metal: proxyDHCP answers the machines' PXE requests on %s (your DHCP server keeps leasing addresses and needs no boot settings); power the machines on with network boot\n", p.Interface)
	} else {
		fmt.Fprintf(u.opts.Progress, "  metal: point your DHCP server's iPXE clients at %s/boot.ipxe (README: Bare metal), then power the machines on with network boot\n", url)
	}
	return url + "/boot.ipxe", nil
}

// waitInstalled waits until every machine has installed itself, bounded by
// Options.InstallTimeout (someone has to power them on).
func waitInstalled(ctx context.Context, u *bringUp) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, u.opts.InstallTimeout)
	defer cancel()
	if err := u.metal.server.WaitInstalled(ctx); err != nil {
		return "", err
	}
	return strconv.Itoa(len(u.state.Machines)), nil
}

// finish stops the boot server when the bring-up has ended (after ctx
// with KeepServing and a Ready cluster).
func (b *metalBoot) finish(ctx context.Context, err error, o Options) error {
	if b.stop == nil {
		return err
	}
	if err == nil {
		now := time.Now()
		for _, st := range b.server.Status() {
			switch {
			case st.Booted.IsZero() && st.Sent == 0:
				fmt.Fprintf(o.Progress, "  metal: %s did not boot from the network (a boot disk from kubeup metal disk, or installed before)\n", st.Name)
			case st.Installed.IsZero() || st.Booted.IsZero():
				fmt.Fprintf(o.Progress, "  metal: %s: %d MiB served\n", st.Name, st.Sent>>20)
			default:
				fmt.Fprintf(o.Progress, "  metal: %s: network boot → installed %s, → cluster Ready %s; %d MiB served to it\n",
					st.Name, st.Installed.Sub(st.Booted).Round(time.Second), now.Sub(st.Booted).Round(time.Second), st.Sent>>20)
			}
		}
	}
	if err == nil && o.KeepServing {
		fmt.Fprintf(o.Progress, "  metal: the boot server keeps serving %s until interrupted (--keep-serving)\n", b.url)
		<-ctx.Done()
	}
	b.stop()
	if serr := <-b.done; serr != nil && err == nil {
		err = fmt.Errorf("boot server: %w", serr)
	}
	fmt.Fprintf(o.Progress, "  metal: the boot server stopped\n")
	return err
}
