package preload

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/platforms"
)

// Namespace is the containerd namespace the CRI plugin uses.
const Namespace = "k8s.io"

// Labels every preloaded image carries: the CRI plugin lists images it
// manages, and pinned images are exempt from the kubelet's image GC.
var Labels = map[string]string{
	"io.cri-containerd.image":  "managed",
	"io.cri-containerd.pinned": "pinned",
}

// Image is one preloaded image.
type Image struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// Options for Run.
type Options struct {
	// Containerd is the containerd binary to run (the image's own).
	Containerd string
	// Root is the image root; the store goes to Root/var/lib/containerd.
	Root string
	// Tarballs to import.
	Tarballs []string
	// WorkDir holds containerd's state, socket and log while it runs.
	WorkDir string
}

// disabledPlugins are the containerd plugins an import-only containerd
// does without: no CRI, no runtimes, no network.
var disabledPlugins = []string{"io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime",
	"io.containerd.podsandbox.controller.v1.podsandbox", "io.containerd.sandbox.controller.v1.shim", "io.containerd.nri.v1.nri",
	"io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"}

// DisabledPlugins is disabledPlugins as a TOML array, for the
// disabled_plugins line of a containerd config (also the agent's registry
// mirror test's containerd).
func DisabledPlugins() string {
	q := make([]string, len(disabledPlugins))
	for i, p := range disabledPlugins {
		q[i] = strconv.Quote(p)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// Run starts containerd, imports every tarball and stops containerd.
func Run(ctx context.Context, o Options) ([]Image, error) {
	state := filepath.Join(o.WorkDir, "containerd-state")
	sock := filepath.Join(state, "containerd.sock")
	cfg := filepath.Join(o.WorkDir, "containerd.toml")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return nil, err
	}
	// Only what importing needs: no CRI, no runtimes, no network.
	conf := fmt.Sprintf(`version = 3
root = %q
state = %q
disabled_plugins = %s
[grpc]
address = %q
`, filepath.Join(o.Root, "var/lib/containerd"), state, DisabledPlugins(), sock)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(o.WorkDir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(o.Containerd, "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.Containerd, err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}()

	client, err := connect(ctx, sock, logf.Name())
	if err != nil {
		return nil, err
	}
	defer client.Close()
	ctx = namespaces.WithNamespace(ctx, Namespace)
	// Everything happens under one lease; deleting it synchronously runs
	// the garbage collector, which removes the compressed layer blobs the
	// unpacked snapshots make redundant (the image would carry every layer
	// twice otherwise).
	ls := client.LeasesService()
	lease, err := ls.Create(ctx, leases.WithRandomID(), leases.WithExpiration(time.Hour))
	if err != nil {
		return nil, fmt.Errorf("containerd lease: %w", err)
	}
	lctx := leases.WithLease(ctx, lease.ID)
	var out []Image
	for _, tb := range o.Tarballs {
		imgs, err := importOne(lctx, client, tb)
		if err != nil {
			return nil, fmt.Errorf("preload %s: %w", tb, err)
		}
		out = append(out, imgs...)
	}
	if err := ls.Delete(ctx, lease, leases.SynchronousDelete); err != nil {
		return nil, fmt.Errorf("release containerd lease: %w", err)
	}
	return out, nil
}

func connect(ctx context.Context, sock, logPath string) (*containerd.Client, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			c, err := containerd.New(sock, containerd.WithTimeout(5*time.Second))
			if err == nil {
				if ok, err := c.IsServing(ctx); ok && err == nil {
					return c, nil
				}
				c.Close()
			}
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("containerd did not start within 30s:\n%s", tailLines(string(log), 20))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func importOne(ctx context.Context, client *containerd.Client, tarball string) ([]Image, error) {
	f, err := os.Open(tarball)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	imgs, err := client.Import(ctx, f,
		containerd.WithImportPlatform(platforms.Only(platforms.MustParse("linux/amd64"))),
		containerd.WithImageLabels(Labels),
		containerd.WithDiscardUnpackedLayers())
	if err != nil {
		return nil, err
	}
	if len(imgs) == 0 {
		return nil, errors.New("the tarball holds no image")
	}
	var out []Image
	for _, img := range imgs {
		image := containerd.NewImage(client, img)
		if err := image.Unpack(ctx, "overlayfs"); err != nil {
			return nil, fmt.Errorf("unpack %s: %w", img.Name, err)
		}
		out = append(out, Image{Ref: img.Name, Digest: img.Target.Digest.String()})
	}
	return out, nil
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
