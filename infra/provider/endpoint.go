package provider

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"
	pulumirpc "github.com/pulumi/pulumi/sdk/v3/proto/go"

	"kubeup.dev/kubeup/daemons/apilb"
	"kubeup.dev/kubeup/infra/qemu"
)

// EndpointType is the host's API endpoint of a cluster with several
// masters: the machines' load balancer (daemons/apilb) run on the host,
// on 127.0.0.1, over each master's API server port forward. kubectl on the
// host keeps working while any one master is gone, as the machines do.
const EndpointType = "kubeup:local:Endpoint"

// EndpointCommand is the argument that makes this plugin's binary the
// endpoint process instead of the provider (a multi-call binary: nothing
// else to install).
const EndpointCommand = "apilb"

type endpointKind struct{}

func (endpointKind) check(p resource.PropertyMap) []*pulumirpc.CheckFailure {
	f := requireStrings(p, "dir", "listen", "caFile", "certFile", "keyFile")
	if v, ok := p["backends"]; !ok || !v.IsArray() || len(v.ArrayValue()) == 0 {
		f = append(f, &pulumirpc.CheckFailure{Property: "backends", Reason: "backends must list the masters' forwarded API server ports (host:port)"})
	}
	return f
}

// endpointProc is the endpoint process of a directory.
type endpointProc struct {
	Dir, Listen                    string
	Backends                       []string
	CAFile, CertFile, KeyFile, Bin string
}

func endpointOf(p resource.PropertyMap) *endpointProc {
	e := &endpointProc{Dir: str(p, "dir"), Listen: str(p, "listen"), CAFile: str(p, "caFile"), CertFile: str(p, "certFile"), KeyFile: str(p, "keyFile")}
	if v, ok := p["backends"]; ok && v.IsArray() {
		for _, b := range v.ArrayValue() {
			if b.IsString() {
				e.Backends = append(e.Backends, b.StringValue())
			}
		}
	}
	return e
}

func (e *endpointProc) pidFile() string { return filepath.Join(e.Dir, "endpoint.pid") }
func (e *endpointProc) logFile() string { return filepath.Join(e.Dir, "endpoint.log") }

func (e *endpointProc) proc() qemu.Detached {
	return qemu.Detached{Name: "the API endpoint", PIDFile: e.pidFile(), Markers: []string{"\x00" + EndpointCommand + "\x00", e.Listen}}
}

// running reports the process of this directory by its PID file.
func (e *endpointProc) running() (int, bool) { return e.proc().Running() }

// start runs the endpoint detached (its own session: it outlives the
// engine and this plugin, like the VMs) and waits until it listens.
func (e *endpointProc) start(ctx context.Context) (int, error) {
	if pid, ok := e.running(); ok {
		return pid, nil
	}
	if err := os.MkdirAll(e.Dir, 0o755); err != nil {
		return 0, err
	}
	bin := e.Bin
	if bin == "" {
		self, err := os.Executable()
		if err != nil {
			return 0, err
		}
		bin = self
	}
	logf, err := os.OpenFile(e.logFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, EndpointCommand, "--listen", e.Listen, "--backends", strings.Join(e.Backends, ","),
		"--cacert", e.CAFile, "--cert", e.CertFile, "--key", e.KeyFile)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("start the API endpoint: %w", err)
	}
	pid := cmd.Process.Pid
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	if err := os.WriteFile(e.pidFile(), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		cmd.Process.Kill()
		return 0, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-exited:
			log, _ := os.ReadFile(e.logFile())
			return 0, fmt.Errorf("the API endpoint exited (%v): %s", err, lastLines(string(log), 5))
		case <-ctx.Done():
			cmd.Process.Kill()
			return 0, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if c, err := net.DialTimeout("tcp", e.Listen, time.Second); err == nil {
			c.Close()
			// The process stays ours only until this plugin exits; it is
			// not waited for after that (the session leader is reparented).
			return pid, nil
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			return 0, fmt.Errorf("the API endpoint did not listen on %s within 10s (log: %s)", e.Listen, e.logFile())
		}
	}
}

func (e *endpointProc) stop() error { return e.proc().Stop() }

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func (endpointKind) create(ctx context.Context, p resource.PropertyMap) (string, resource.PropertyMap, error) {
	e := endpointOf(p)
	pid, err := e.start(ctx)
	if err != nil {
		return "", nil, err
	}
	out := p.Copy()
	out["pid"] = resource.NewNumberProperty(float64(pid))
	return e.Dir, out, nil
}

func (endpointKind) read(_ context.Context, id string, state resource.PropertyMap) (resource.PropertyMap, bool, error) {
	e := endpointOf(state)
	e.Dir = id
	pid, ok := e.running()
	if !ok {
		return nil, false, nil
	}
	out := state.Copy()
	out["pid"] = resource.NewNumberProperty(float64(pid))
	return out, true, nil
}

func (endpointKind) delete(_ context.Context, id string, state resource.PropertyMap) error {
	e := endpointOf(state)
	e.Dir = id
	if err := e.stop(); err != nil {
		return err
	}
	_ = os.Remove(e.logFile())
	return os.Remove(e.Dir)
}

// StopEndpoint stops the endpoint process of dir by its PID file, if it
// runs (kubeup down's sweep after a failed or interrupted up).
func StopEndpoint(dir string) error { return (&endpointProc{Dir: dir}).stop() }

// RunEndpoint is the endpoint process (`pulumi-resource-kubeup apilb ...`).
func RunEndpoint(args []string) int {
	fs := flag.NewFlagSet(EndpointCommand, flag.ContinueOnError)
	o := apilb.Options{}
	var backends string
	fs.StringVar(&o.Listen, "listen", "", "address to listen on (127.0.0.1:PORT)")
	fs.StringVar(&backends, "backends", "", "the masters' API server forwards, host:port, comma-separated")
	fs.StringVar(&o.CAFile, "cacert", "", "the cluster CA")
	fs.StringVar(&o.CertFile, "cert", "", "client certificate for the health checks")
	fs.StringVar(&o.KeyFile, "key", "", "its key")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if backends != "" {
		o.Backends = strings.Split(backends, ",")
	}
	o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	lb, err := apilb.New(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "apilb:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	o.Log.Info("serving", "listen", lb.Addr().String(), "backends", o.Backends)
	if err := lb.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "apilb:", err)
		return 1
	}
	return 0
}
