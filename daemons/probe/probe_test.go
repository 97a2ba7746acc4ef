package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"kubeup.dev/kubeup/test/kubetest"
)

func fastProbe(url string) Options {
	return Options{URL: url, Timeout: 5 * time.Second, Interval: 10 * time.Millisecond}
}

func TestProbeHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) }))
	defer srv.Close()
	if err := Run(context.Background(), fastProbe(srv.URL)); err != nil {
		t.Fatal(err)
	}
}

func TestProbeWaitsForReady(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "etcd not ready", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	}))
	defer srv.Close()
	if err := Run(context.Background(), fastProbe(srv.URL)); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3", n)
	}
}

func TestProbeTimeoutReportsLastAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "[-]etcd failed: reason withheld", http.StatusInternalServerError)
	}))
	defer srv.Close()
	o := fastProbe(srv.URL + "/readyz")
	o.Timeout = 100 * time.Millisecond
	err := Run(context.Background(), o)
	if err == nil {
		t.Fatal("probe of a failing endpoint succeeded")
	}
	for _, want := range []string{srv.URL + "/readyz", "not ready after", "500 Internal Server Error", "[-]etcd failed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}

	// Nothing listening: the last error is the connection failure.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	o = fastProbe("http://" + addr + "/healthz")
	o.Timeout = 100 * time.Millisecond
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("closed port: %v", err)
	}
}

func TestProbeTLSWithClientCert(t *testing.T) {
	ca := kubetest.NewCA(t, "kubernetes")
	dir := t.TempDir()
	certFile, keyFile := ca.IssueFiles(t, dir, "client", pkix.Name{CommonName: "kubeup-agent"}, x509.ExtKeyUsageClientAuth)
	serving := ca.TLSCertificate(t, pkix.Name{CommonName: "kubeup-agent"}, x509.ExtKeyUsageServerAuth, time.Time{})
	caFile := filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok"))
	}))
	// Like kube-apiserver's /readyz without anonymous auth: a client
	// certificate from the cluster CA is required.
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{serving}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()

	o := fastProbe(srv.URL)
	o.CACert, o.Cert, o.Key = caFile, certFile, keyFile
	if err := Run(context.Background(), o); err != nil {
		t.Fatalf("with client cert: %v", err)
	}

	// Long enough for one attempt on a loaded machine; each attempt fails
	// at once, and the error is the last attempt's.
	o.Cert, o.Key = "", ""
	o.Timeout = 2 * time.Second
	if err := Run(context.Background(), o); err == nil {
		t.Error("without client cert: probe succeeded")
	}

	o = fastProbe(srv.URL) // system roots do not know the test CA
	o.Timeout = 2 * time.Second
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("unknown CA: %v", err)
	}

	o = fastProbe(srv.URL)
	o.Cert = certFile
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "--cert and --key") {
		t.Errorf("cert without key: %v", err)
	}
}

// fakeGRPCHealth serves grpc.health.v1.Health/Check on a unix socket with
// net/http's unencrypted HTTP/2, answering status (or grpcStatus != "0").
func fakeGRPCHealth(t *testing.T, status uint64, grpcStatus string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "grpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "containerd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protocols, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/grpc.health.v1.Health/Check" || r.Header.Get("Content-Type") != "application/grpc" || r.ProtoMajor != 2 {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/grpc")
		w.Header().Set("Trailer", "Grpc-Status")
		if grpcStatus == "0" {
			msg := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), status)
			frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
			w.Write(append(frame, msg...))
		}
		w.Header().Set("Grpc-Status", grpcStatus)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

func TestProbeGRPCHealth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		status     uint64
		grpcStatus string
		ready      bool
		msg        string
	}{
		{"serving", 1, "0", true, ""},
		{"not serving", 2, "0", false, "NOT_SERVING"},
		{"no health service", 0, "12", true, ""},
		{"other gRPC error", 0, "14", false, `grpc-status "14"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock := fakeGRPCHealth(t, tc.status, tc.grpcStatus)
			o := fastProbe("unix://" + sock)
			o.Timeout = 200 * time.Millisecond
			err := Run(context.Background(), o)
			if tc.ready != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.msg)) {
				t.Errorf("got %v, want ready=%v (%s)", err, tc.ready, tc.msg)
			}
		})
	}
}

func TestProbeUnixSocketMissing(t *testing.T) {
	o := fastProbe("unix://" + filepath.Join(t.TempDir(), "nothing.sock"))
	o.Timeout = 100 * time.Millisecond
	if err := Run(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing socket: %v", err)
	}
	// An HTTP/1 server on the socket is not gRPC.
	dir, _ := os.MkdirTemp("", "h1")
	defer os.RemoveAll(dir)
	ln, err := net.Listen("unix", filepath.Join(dir, "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.NotFoundHandler()}
	go srv.Serve(ln)
	defer srv.Close()
	o = fastProbe("unix://" + filepath.Join(dir, "s.sock"))
	o.Timeout = 100 * time.Millisecond
	if err := Run(context.Background(), o); err == nil {
		t.Error("HTTP/1 socket passed the gRPC probe")
	}
}

func TestProbeBadURL(t *testing.T) {
	for _, u := range []string{"ftp://x", "unix://", "::"} {
		if err := Run(context.Background(), fastProbe(u)); err == nil {
			t.Errorf("%q accepted", u)
		}
	}
}

// TestProbeNode waits through a missing Node and a Node without addresses,
// and is ready once the Node has one.
func TestProbeNode(t *testing.T) {
	var calls atomic.Int32
	var neverAddress atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if neverAddress.Load() {
			calls.Store(1)
		}
		if r.URL.Path != "/api/v1/nodes/node-0" {
			http.Error(w, "unexpected "+r.URL.Path, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch calls.Add(1) {
		case 1:
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404,"message":"nodes \"node-0\" not found"}`))
		case 2:
			w.Write([]byte(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-0"}}`))
		default:
			w.Write([]byte(`{"kind":"Node","apiVersion":"v1","metadata":{"name":"node-0"},"status":{"addresses":[{"type":"InternalIP","address":"10.77.0.100"}]}}`))
		}
	}))
	defer srv.Close()
	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	kc := "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: " + srv.URL + "}}]\n" +
		"users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n"
	if err := os.WriteFile(kubeconfig, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	agentConfig := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(agentConfig, []byte("apiVersion: kubeup.dev/v1alpha1\nkind: AgentConfig\nmachine: node-0\nkubeconfig: "+kubeconfig+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := Options{NodeOf: agentConfig, Timeout: 5 * time.Second, Interval: 10 * time.Millisecond}
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 3 {
		t.Errorf("%d calls, want 3 (not found, no address, ready)", n)
	}

	// A Node that never gets an address: the error names the node.
	neverAddress.Store(true)
	o.Timeout = 100 * time.Millisecond
	err := Run(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "probe node node-0: not ready") || !strings.Contains(err.Error(), "no address yet") {
		t.Errorf("Probe of a Node without addresses = %v", err)
	}
	// A bad agent configuration fails at once.
	if err := Run(context.Background(), Options{NodeOf: filepath.Join(dir, "missing.yaml")}); err == nil {
		t.Error("Probe with a missing agent configuration succeeded")
	}
}

// A probe that waits on a unit's main process gives up as soon as that
// process is gone, not at its timeout: systemd can restart the unit only
// once its ExecStartPost has ended.
func TestProbeFailsWhenMainProcessExits(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed: reason withheld\nreadyz check failed", http.StatusInternalServerError)
	}))
	defer srv.Close()
	cmd := exec.Command("sleep", "0.3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	o := fastProbe(srv.URL + "/readyz")
	o.Timeout, o.MainPID = time.Minute, cmd.Process.Pid
	start := time.Now()
	err := Run(context.Background(), o)
	<-exited
	if !errors.Is(err, ErrMainExited) || !strings.Contains(err.Error(), "[-]poststarthook/rbac/bootstrap-roles failed") {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("gave up after %s, want soon after the process exited", d)
	}
	if strings.Contains(err.Error(), "[+]ping") {
		t.Errorf("error repeats the passing checks: %v", err)
	}
}

// A start that keeps changing its answer is progressing and may use the
// whole timeout; one that gives the same answer for Stall is given up.
func TestProbeStall(t *testing.T) {
	var calls atomic.Int32
	progressing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if n >= 30 {
			w.Write([]byte("ok"))
			return
		}
		// One check fewer failing every few tries.
		http.Error(w, strings.Repeat("[-]hook failed\n", int(30-n)/3+1), http.StatusInternalServerError)
	}))
	defer progressing.Close()
	o := fastProbe(progressing.URL)
	// The whole start (30 tries 100 ms apart) takes three times the stall
	// time; 3 tries take under a third of it, with room for a loaded
	// machine (where 3 tries 10 ms apart once took over 100 ms).
	o.Interval, o.Stall, o.Timeout = 100*time.Millisecond, time.Second, 30*time.Second
	if err := Run(context.Background(), o); err != nil {
		t.Errorf("progressing start: %v", err)
	}

	stuck := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "[-]etcd failed: reason withheld", http.StatusInternalServerError)
	}))
	defer stuck.Close()
	o = fastProbe(stuck.URL)
	o.Stall = 100 * time.Millisecond
	start := time.Now()
	err := Run(context.Background(), o)
	if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "[-]etcd failed") {
		t.Fatalf("stuck start: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("stuck start given up after %s, want about the stall time", d)
	}
}

func TestProcessAlive(t *testing.T) {
	if !processAlive(os.Getpid()) {
		t.Error("this process is not alive")
	}
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	if processAlive(cmd.Process.Pid) {
		t.Error("an exited, reaped process is alive")
	}
	// A zombie: exited, not yet reaped.
	z := exec.Command("true")
	if err := z.Start(); err != nil {
		t.Fatal(err)
	}
	defer z.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for processAlive(z.Process.Pid) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if processAlive(z.Process.Pid) {
		t.Error("a zombie counts as alive")
	}
}

// Progress hears each new answer of a start once, in order, and nothing
// once it is ready.
func TestProbeProgress(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n := calls.Add(1); {
		case n <= 3:
			http.Error(w, "[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed\n[-]etcd failed", http.StatusInternalServerError)
		case n <= 5:
			http.Error(w, "[+]ping ok\n[-]poststarthook/rbac/bootstrap-roles failed", http.StatusInternalServerError)
		default:
			w.Write([]byte("ok"))
		}
	}))
	defer srv.Close()
	o := fastProbe(srv.URL)
	var heard []string
	o.Progress = func(elapsed time.Duration, answer error) {
		if elapsed < 0 {
			t.Errorf("elapsed %s", elapsed)
		}
		heard = append(heard, answer.Error())
	}
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"last response 500 Internal Server Error: [-]poststarthook/rbac/bootstrap-roles failed; [-]etcd failed",
		"last response 500 Internal Server Error: [-]poststarthook/rbac/bootstrap-roles failed",
	}
	if !slices.Equal(heard, want) {
		t.Errorf("progress heard\n%q\nwant\n%q", heard, want)
	}
}
