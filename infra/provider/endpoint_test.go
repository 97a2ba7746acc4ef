package provider

import (
	"context"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pulumi/pulumi/sdk/v3/go/common/resource"

	"kubeup.dev/kubeup/infra/qemu"
)

// The test binary is also the endpoint process, as the plugin's binary is
// (EndpointCommand as its first argument).
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == EndpointCommand {
		os.Exit(RunEndpoint(os.Args[2:]))
	}
	os.Exit(m.Run())
}

// An endpoint resource is a detached process that proxies to its
// backends; read finds it by its PID file, delete stops it and removes
// its directory.
func TestEndpointLifecycle(t *testing.T) {
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Close()
	go func() {
		for {
			c, err := backend.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, "hello from the API server\n")
			c.Close()
		}
	}()
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	listen := free.Addr().String()
	free.Close()

	dir := filepath.Join(t.TempDir(), "endpoint")
	// No certificate on disk: the health checks are TCP connects.
	missing := filepath.Join(t.TempDir(), "missing")
	props := resource.PropertyMap{
		"dir": resource.NewStringProperty(dir), "listen": resource.NewStringProperty(listen),
		"backends": resource.NewArrayProperty([]resource.PropertyValue{resource.NewStringProperty(backend.Addr().String())}),
		"caFile":   resource.NewStringProperty(missing + "/ca.crt"), "certFile": resource.NewStringProperty(missing + "/a.crt"),
		"keyFile": resource.NewStringProperty(missing + "/a.key"),
	}
	var k endpointKind
	if f := k.check(props); len(f) != 0 {
		t.Fatalf("check: %v", f)
	}
	id, outs, err := k.create(context.Background(), props)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = StopEndpoint(dir) })
	pid := int(outs["pid"].NumberValue())
	c, err := net.DialTimeout("tcp", listen, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	c.Close()
	if !strings.Contains(string(got), "hello from the API server") {
		t.Errorf("through the endpoint: %q", got)
	}
	if _, ok, err := k.read(context.Background(), id, outs); !ok || err != nil {
		t.Fatalf("read of a running endpoint: %v %v", ok, err)
	}
	if err := k.delete(context.Background(), id, outs); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("%s left after delete: %v", dir, err)
	}
	if !qemu.WaitExit(pid, 5*time.Second) {
		t.Errorf("endpoint pid %d still runs after delete", pid)
	}
	if _, ok, _ := k.read(context.Background(), id, outs); ok {
		t.Error("read finds a deleted endpoint")
	}
	if f := k.check(resource.PropertyMap{"dir": resource.NewStringProperty(dir)}); len(f) < 2 {
		t.Errorf("check of an empty endpoint: %v, want failures for listen, backends, ...", f)
	}
}
