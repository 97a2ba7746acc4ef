package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCertificateScan(t *testing.T) {
	t.Parallel()
	ca := newTestCA(t, "kubernetes")
	dir := t.TempDir()
	expiry := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	apiserver, key := ca.issue(t, "kube-apiserver", nil, true, expiry)
	writeFile(t, filepath.Join(dir, "ca.crt"), ca.pem)
	writeFile(t, filepath.Join(dir, "apiserver.crt"), apiserver)
	writeFile(t, filepath.Join(dir, "apiserver.key"), key)
	writeFile(t, filepath.Join(dir, "bundle.crt"), append(append([]byte{}, apiserver...), ca.pem...))
	writeFile(t, filepath.Join(dir, "broken.crt"), []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	// The kubelet's rotating store: only the current one counts.
	kubelet := filepath.Join(dir, "kubelet")
	old, oldKey := ca.issue(t, "system:node:node-0", []string{"system:nodes"}, false, time.Now().Add(-time.Hour))
	cur, curKey := ca.issue(t, "system:node:node-0", []string{"system:nodes"}, false, expiry)
	writeFile(t, filepath.Join(kubelet, "kubelet-client-2025-01-01-00-00-00.pem"), append(old, oldKey...))
	writeFile(t, filepath.Join(kubelet, "kubelet-client-2026-01-01-00-00-00.pem"), append(cur, curKey...))
	if err := os.Symlink("kubelet-client-2026-01-01-00-00-00.pem", filepath.Join(kubelet, "kubelet-client-current.pem")); err != nil {
		t.Fatal(err)
	}

	certs, errs := scanCertificates([]string{dir, filepath.Join(dir, "not-yet")})
	if errs != 1 {
		t.Errorf("%d unreadable files, want 1 (broken.crt)", errs)
	}
	var got []string
	for _, c := range certs {
		got = append(got, strings.TrimPrefix(c.Path, dir)+" "+c.Subject)
	}
	want := []string{
		"/apiserver.crt CN=kube-apiserver",
		"/bundle.crt CN=kube-apiserver",
		"/bundle.crt CN=kubernetes",
		"/ca.crt CN=kubernetes",
		"/kubelet/kubelet-client-current.pem CN=system:node:node-0,O=system:nodes",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("found\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	now := time.Date(2030, 1, 1, 3, 4, 5, 0, time.UTC)
	s := &certScanner{certs: certs[:1], errors: errs}
	c := &certCollector{scanner: s, now: func() time.Time { return now }}
	expected := `
# HELP kubeup_certificate_expiry_seconds Seconds until a certificate's NotAfter (negative once expired).
# TYPE kubeup_certificate_expiry_seconds gauge
kubeup_certificate_expiry_seconds{path="` + filepath.Join(dir, "apiserver.crt") + `",subject="CN=kube-apiserver"} 86400
# HELP kubeup_certificate_scan_errors Files under the certificate directories that could not be read or parsed in the last scan.
# TYPE kubeup_certificate_scan_errors gauge
kubeup_certificate_scan_errors 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(expected)); err != nil {
		t.Error(err)
	}
}

type flakyTask struct {
	name  string
	runs  atomic.Int32
	fails int32
	panic bool
}

func (f *flakyTask) Name() string { return f.name }
func (f *flakyTask) Run(ctx context.Context) error {
	n := f.runs.Add(1)
	if n <= f.fails {
		if f.panic {
			panic("boom")
		}
		return errors.New("flaky")
	}
	<-ctx.Done()
	return nil
}

type doneTask struct{}

func (doneTask) Name() string                      { return "done" }
func (doneTask) Run(context.Context) error         { return nil }
func (doneTask) Healthy() error                    { return errors.New("never asked: not running") }
func noSleep(context.Context, time.Duration) error { return nil }

func TestSupervisorRestarts(t *testing.T) {
	failing := &flakyTask{name: "failing", fails: 3}
	panicking := &flakyTask{name: "panicking", fails: 1, panic: true}
	s := newSupervisor([]Task{failing, panicking, doneTask{}}, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	s.sleep = noSleep
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- s.Run(ctx) }()
	waitFor(t, "restarts", func() bool { return failing.runs.Load() == 4 && panicking.runs.Load() == 2 })
	waitFor(t, "running", func() bool {
		st := s.Statuses()
		return st[0].State == "running" && st[1].State == "running" && st[2].State == "done"
	})
	st := s.Statuses()
	if st[0].Restarts != 3 || st[0].LastError != "flaky" || st[1].Restarts != 1 || !strings.Contains(st[1].LastError, "panic: boom") {
		t.Errorf("statuses %+v", st)
	}
	if err := s.Healthy(); err != nil {
		t.Errorf("healthy: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

type stuckTask struct{}

func (stuckTask) Name() string                  { return "stuck" }
func (stuckTask) Run(ctx context.Context) error { <-ctx.Done(); return nil }
func (stuckTask) Healthy() error                { return errors.New("stuck: no progress") }

func TestSupervisorHealth(t *testing.T) {
	s := newSupervisor([]Task{stuckTask{}}, slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	waitFor(t, "unhealthy", func() bool { return s.Healthy() != nil })
	s.setExited(errors.New("task x stopped"))
	if err := s.Healthy(); err == nil || !strings.Contains(err.Error(), "task x stopped") {
		t.Errorf("exited loop: %v", err)
	}
}

// TestDaemonRun runs the whole daemon on fakes: READY=1 once listening,
// watchdog pings, STOPPING=1 and a clean exit on cancel.
func TestDaemonRun(t *testing.T) {
	dir, err := os.MkdirTemp("", "notify")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "100000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	td := newTestDaemon(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- td.Run(ctx) }()
	read := func() string {
		buf := make([]byte, 256)
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("no notification: %v", err)
		}
		return string(buf[:n])
	}
	if got := read(); got != "READY=1" {
		t.Fatalf("first notification %q, want READY=1", got)
	}
	if got := read(); got != "WATCHDOG=1" {
		t.Fatalf("then %q, want WATCHDOG=1", got)
	}
	cancel()
	for {
		if got := read(); got == "STOPPING=1" {
			break
		}
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("daemon did not stop")
	}
}

func TestDaemonListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	td := newTestDaemon(t, nil)
	td.cfg.Listen = ln.Addr().String() // taken
	if err := td.Run(context.Background()); err == nil || !strings.Contains(err.Error(), "listen on") {
		t.Errorf("got %v", err)
	}
}

func TestKubeClientWaitsForKubeconfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "kubelet.conf")
	k := newKubeClient(path, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var delays []time.Duration
	k.sleep = func(_ context.Context, d time.Duration) error {
		delays = append(delays, d)
		if len(delays) == 3 { // the kubelet finishes bootstrapping
			writeFile(t, path, []byte(`apiVersion: v1
kind: Config
clusters: [{name: demo, cluster: {server: "https://10.77.0.10:6443"}}]
users: [{name: node, user: {token: x}}]
contexts: [{name: node, context: {cluster: demo, user: node}}]
current-context: node
`))
		}
		return nil
	}
	if _, ok := k.Get(); ok {
		t.Fatal("client ready before the kubeconfig exists")
	}
	if err := k.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := k.Get(); !ok {
		t.Fatal("client not published")
	}
	if want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second}; !slices.Equal(delays, want) {
		t.Errorf("back-off %v, want %v", delays, want)
	}
}
