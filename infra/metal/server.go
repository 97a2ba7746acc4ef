package metal

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"kubeup.dev/kubeup/daemons/installer"
	"kubeup.dev/kubeup/images/disk"
)

// Machine is one machine the server boots.
type Machine struct {
	Name    string
	Role    string
	MAC     net.HardwareAddr
	Address netip.Prefix // the installer's address (a DHCP machine's reservation)
	Gateway netip.Addr   // invalid: none
	Disk    string       // "" for the first disk not removable
	// Seed is its NoCloud seed: meta-data, user-data, network-config.
	Seed map[string][]byte
}

// Options configure a Server.
type Options struct {
	// URL is the server as the machines reach it (http://192.168.10.2:8080).
	URL string
	// Assets of each role its machines install.
	Assets   map[string]*RoleAssets
	Machines []Machine
	// Installed are the MACs of machines installed before (kept in the
	// cluster's state): their iPXE script boots them from their disks.
	Installed map[string]time.Time
	// OnInstalled is called when a machine reports it is installed, to
	// keep that in the cluster's state.
	OnInstalled func(mac string, at time.Time)
	// Progress gets one line per fetch and report.
	Progress io.Writer
	// Neighbor says which MAC an address on the local network has
	// (default: the kernel's neighbour table).
	Neighbor func(netip.Addr) (net.HardwareAddr, error)
	// IPXE are files served by name over TFTP and HTTP (ipxe.efi,
	// undionly.kpxe) for firmware that must chain-load iPXE.
	IPXE map[string]string
}

// Server is the network boot of one cluster's machines.
type Server struct {
	o     Options
	base  *url.URL
	start time.Time

	mu       sync.Mutex
	machines map[string]*state // by MAC
	changed  chan struct{}     // closed and replaced on every change
}

type state struct {
	Machine
	token     string
	booted    time.Time // its first network boot (the iPXE script)
	sent      int64     // bytes served to it: script, kernel, initrd, image, seed
	installed time.Time
	last      installer.Report
	failures  int
}

// New checks o and makes a server.
func New(o Options) (*Server, error) {
	base, err := url.Parse(o.URL)
	if err != nil || base.Scheme != "http" || base.Host == "" {
		return nil, fmt.Errorf("boot server URL %q: want http://ADDRESS:PORT", o.URL)
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Neighbor == nil {
		o.Neighbor = kernelNeighbor
	}
	s := &Server{o: o, base: base, start: time.Now(), machines: map[string]*state{}, changed: make(chan struct{})}
	for _, m := range o.Machines {
		a, ok := o.Assets[m.Role]
		if !ok || a == nil {
			return nil, fmt.Errorf("%s: no network boot assets for role %s", m.Name, m.Role)
		}
		for _, f := range disk.SeedFiles {
			if _, ok := m.Seed[f]; !ok {
				return nil, fmt.Errorf("%s: its seed lacks %s", m.Name, f)
			}
		}
		tok := make([]byte, 16)
		if _, err := rand.Read(tok); err != nil {
			return nil, err
		}
		mac := m.MAC.String()
		if _, dup := s.machines[mac]; dup {
			return nil, fmt.Errorf("%s: MAC %s is another machine's", m.Name, mac)
		}
		s.machines[mac] = &state{Machine: m, token: hex.EncodeToString(tok), installed: o.Installed[mac]}
	}
	return s, nil
}

// Handler serves the boot.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /boot.ipxe", s.bootScript)
	mux.HandleFunc("GET /ipxe/{mac}", s.machineScript)
	mux.HandleFunc("GET /assets/{role}/{file}", s.asset)
	mux.HandleFunc("GET /ipxe-bin/{file}", s.ipxeBinary)
	mux.HandleFunc("GET "+installer.NoCloudPath+"{mac}/{token}/{file}", s.seed)
	mux.HandleFunc("POST "+installer.ReportPath+"{mac}/{token}", s.report)
	return mux
}

func (s *Server) url(p string) string {
	u := *s.base
	u.Path = strings.TrimSuffix(u.Path, "/") + p
	return u.String()
}

func (s *Server) logf(format string, a ...any) {
	fmt.Fprintf(s.o.Progress, "  metal %s "+format+"\n", append([]any{fmtElapsed(time.Since(s.start))}, a...)...)
}

func fmtElapsed(d time.Duration) string {
	d = d.Round(time.Second)
	return fmt.Sprintf("%d:%02d", int(d.Minutes()), int(d.Seconds())%60)
}

// bootScript is what DHCP points iPXE at: it asks for the script of the
// interface iPXE booted from.
func (s *Server) bootScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprintf(w, "#!ipxe\nchain %s/ipxe/${netX/mac:hexhyp}?ip=${netX/ip}\n", strings.TrimSuffix(s.url(""), "/"))
}

// parseMAC reads a MAC written with colons or hyphens.
func parseMAC(v string) (string, bool) {
	hw, err := net.ParseMAC(strings.ReplaceAll(v, "-", ":"))
	if err != nil || len(hw) != 6 {
		return "", false
	}
	return hw.String(), true
}

func (s *Server) lookup(mac string) *state {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.machines[mac]
}

// machineScript is one machine's iPXE script: install, or boot from the
// disk when it is installed already.
func (s *Server) machineScript(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	mac, ok := parseMAC(r.PathValue("mac"))
	m := s.lookup(mac)
	if !ok || m == nil {
		s.logf("%s asked for the iPXE script of %s: not a machine of this cluster", remoteIP(r), r.PathValue("mac"))
		fmt.Fprintf(w, "#!ipxe\necho kubeup: %s is not a machine of this cluster (spec.target.metal.machines); booting on\nsleep 5\nexit\n", r.PathValue("mac"))
		return
	}
	if ip := r.URL.Query().Get("ip"); ip != "" && ip != m.Address.Addr().String() {
		s.logf("%s: its firmware has address %s, its config %s (the installer uses %s)", m.Name, ip, m.Address.Addr(), m.Address.Addr())
	}
	s.mu.Lock()
	installed := !m.installed.IsZero()
	s.mu.Unlock()
	if installed {
		s.logf("%s booted from the network but is installed: told to boot from its disk", m.Name)
		fmt.Fprintf(w, "#!ipxe\necho kubeup: %s is installed; booting from its disk\nexit\n", m.Name)
		return
	}
	s.mu.Lock()
	if m.booted.IsZero() {
		m.booted = time.Now()
	}
	s.mu.Unlock()
	w = s.counting(w, m)
	a := s.o.Assets[m.Role]
	p := installer.Params{Server: s.base, Machine: m.Name, MAC: m.MAC, Address: m.Address, Gateway: m.Gateway, Disk: m.Disk,
		Image: "/assets/" + m.Role + "/image.raw.zst", SHA256: a.SHA256, Size: a.Size, Token: m.token}
	args := strings.Join(append(consoleArgs(a.Cmdline), "initrd=initrd.img", "rdinit=/"+InstallerName, p.Cmdline()), " ")
	s.logf("%s (%s, %s) network-booted: installing the %s image", m.Name, mac, remoteIP(r), m.Role)
	fmt.Fprintf(w, `#!ipxe
echo kubeup: installing the %[1]s image on %[2]s
kernel %[3]s/assets/%[1]s/vmlinuz %[4]s || goto failed
initrd --name initrd.img %[3]s/assets/%[1]s/initrd.img || goto failed
boot || goto failed
:failed
echo kubeup: the network boot of %[2]s failed; trying again in 10 s
sleep 10
chain %[3]s/boot.ipxe
`, m.Role, m.Name, strings.TrimSuffix(s.url(""), "/"), args)
}

// consoleArgs keeps the console= arguments of the installed system's
// command line, so the installer writes where the system will.
func consoleArgs(cmdline string) []string {
	var out []string
	for _, f := range strings.Fields(cmdline) {
		if strings.HasPrefix(f, "console=") {
			out = append(out, f)
		}
	}
	return out
}

// asset serves a role's kernel, initrd and image.
func (s *Server) asset(w http.ResponseWriter, r *http.Request) {
	a, ok := s.o.Assets[r.PathValue("role")]
	var file string
	switch name := r.PathValue("file"); {
	case !ok:
	case name == "vmlinuz":
		file = a.Kernel
	case name == "initrd.img":
		file = a.Initrd
	case name == "image.raw.zst":
		file = a.Image
	}
	if file == "" {
		http.NotFound(w, r)
		return
	}
	who := remoteIP(r).String()
	if mac, err := s.o.Neighbor(remoteIP(r)); err == nil {
		if m := s.lookup(mac.String()); m != nil {
			who = m.Name
			w = s.counting(w, m)
		}
	}
	s.logf("%s fetches %s/%s", who, r.PathValue("role"), r.PathValue("file"))
	serveFile(w, r, file)
}

func (s *Server) ipxeBinary(w http.ResponseWriter, r *http.Request) {
	file, ok := s.o.IPXE[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	s.logf("%s fetches iPXE (%s) over HTTP", remoteIP(r), r.PathValue("file"))
	serveFile(w, r, file)
}

func serveFile(w http.ResponseWriter, r *http.Request, file string) {
	f, err := os.Open(file)
	if err != nil {
		http.Error(w, "asset missing on the server", http.StatusInternalServerError)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	http.ServeContent(w, r, path.Base(file), fi.ModTime(), f)
}

// authorize checks that a request for a machine's seed or report comes
// from that machine: its MAC in the path, its token, and its source
// address's neighbour entry on the server's network. It writes the
// refusal itself.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, what string) *state {
	mac, ok := parseMAC(r.PathValue("mac"))
	m := s.lookup(mac)
	ip := remoteIP(r)
	switch {
	case !ok || m == nil:
		s.logf("refused %s from %s: %s is not a machine of this cluster", what, ip, r.PathValue("mac"))
		http.Error(w, "unknown machine", http.StatusNotFound)
		return nil
	case r.PathValue("token") != m.token:
		s.logf("refused %s of %s to %s: wrong token", what, m.Name, ip)
		http.Error(w, "wrong token", http.StatusForbidden)
		return nil
	}
	hw, err := s.o.Neighbor(ip)
	if err != nil || hw.String() != mac {
		s.logf("refused %s of %s to %s: that address is not %s on this network (%v)", what, m.Name, ip, mac, errOr(err, hw))
		http.Error(w, "not this machine's address", http.StatusForbidden)
		return nil
	}
	return m
}

func errOr(err error, hw net.HardwareAddr) string {
	if err != nil {
		return err.Error()
	}
	return "it is " + hw.String()
}

// seed serves a machine's NoCloud seed, to that machine only, until it is
// installed.
func (s *Server) seed(w http.ResponseWriter, r *http.Request) {
	file := r.PathValue("file")
	m := s.authorize(w, r, "the seed file "+file)
	if m == nil {
		return
	}
	s.mu.Lock()
	installed := !m.installed.IsZero()
	s.mu.Unlock()
	if installed {
		s.logf("refused the seed of %s: it is installed already", m.Name)
		http.Error(w, "installed: the seed is on the machine's disk", http.StatusGone)
		return
	}
	data, ok := m.Seed[file]
	if !ok {
		if file == "vendor-data" { // cloud-init asks for it; there is none
			w.WriteHeader(http.StatusOK)
			return
		}
		http.NotFound(w, r)
		return
	}
	s.logf("%s fetches its seed: %s", m.Name, file)
	w = s.counting(w, m)
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(data)
}

// report takes an installer's report.
func (s *Server) report(w http.ResponseWriter, r *http.Request) {
	m := s.authorize(w, r, "a report")
	if m == nil {
		return
	}
	var rep installer.Report
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	now := time.Now()
	s.mu.Lock()
	m.last = rep
	sent, booted := m.sent, m.booted
	if rep.Event == installer.EventFailed {
		m.failures++
	}
	if rep.Event == installer.EventInstalled {
		m.installed = now
	}
	s.notify()
	s.mu.Unlock()
	switch rep.Event {
	case installer.EventWriting:
		s.logf("%s: %d%% of the image written (%d of %d MiB)", m.Name, rep.Written*100/max(rep.Total, 1), rep.Written>>20, rep.Total>>20)
	case installer.EventInstalled:
		took := ""
		if !booted.IsZero() {
			took = " in " + fmtElapsed(now.Sub(booted)) + " from its network boot,"
		}
		s.logf("%s: installed to %s%s %d MiB served to it; rebooting into it", m.Name, rep.Detail, took, sent>>20)
		if s.o.OnInstalled != nil {
			s.o.OnInstalled(m.MAC.String(), now)
		}
	default:
		s.logf("%s: %s %s", m.Name, rep.Event, rep.Detail)
	}
	w.WriteHeader(http.StatusNoContent)
}

// counting counts what w writes as served to m.
func (s *Server) counting(w http.ResponseWriter, m *state) http.ResponseWriter {
	return &countingWriter{ResponseWriter: w, add: func(n int) {
		s.mu.Lock()
		m.sent += int64(n)
		s.mu.Unlock()
	}}
}

type countingWriter struct {
	http.ResponseWriter
	add func(int)
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.add(n)
	return n, err
}

// notify wakes every waiter; s.mu is held.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// MachineStatus is one machine's install, for waits and diagnoses.
type MachineStatus struct {
	Name, MAC string
	Booted    time.Time // its first network boot; zero if it never booted from the network
	Sent      int64     // bytes served to it
	Installed time.Time
	Last      installer.Report
	Failures  int
}

// Status lists every machine's install, by name.
func (s *Server) Status() []MachineStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []MachineStatus
	for mac, m := range s.machines {
		out = append(out, MachineStatus{Name: m.Name, MAC: mac, Booted: m.booted, Sent: m.sent, Installed: m.installed, Last: m.last, Failures: m.failures})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// WaitInstalled waits until every machine has reported it is installed.
func (s *Server) WaitInstalled(ctx context.Context) error {
	for {
		s.mu.Lock()
		var waiting []string
		for _, m := range s.machines {
			if m.installed.IsZero() {
				waiting = append(waiting, m.Name)
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if len(waiting) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			slices.Sort(waiting)
			return fmt.Errorf("not installed: %s (power them on with network boot; see README: Bare metal): %w", strings.Join(waiting, ", "), ctx.Err())
		case <-ch:
		}
	}
}

// ServeListener serves on ln until ctx ends.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func remoteIP(r *http.Request) netip.Addr {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}
