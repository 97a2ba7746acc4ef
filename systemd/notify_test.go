package systemd

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"
)

// fakeNotifySocket stands in for systemd: a unixgram socket NOTIFY_SOCKET
// points at. Every datagram is one notification.
func fakeNotifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	dir, err := os.MkdirTemp("", "notify") // short: sun_path is 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func next(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("no notification: %v", err)
	}
	return string(buf[:n])
}

func TestNotifyMessages(t *testing.T) {
	conn := fakeNotifySocket(t)
	for _, tc := range []struct {
		send func() error
		want string
	}{
		{Ready, "READY=1"},
		{Stopping, "STOPPING=1"},
		{func() error { return Status("two\nlines") }, "STATUS=two lines"},
	} {
		if err := tc.send(); err != nil {
			t.Fatal(err)
		}
		if got := next(t, conn); got != tc.want {
			t.Errorf("got %q, want %q", got, tc.want)
		}
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	t.Setenv("WATCHDOG_USEC", "")
	if err := Ready(); err != nil {
		t.Errorf("Ready outside systemd: %v", err)
	}
	done := make(chan error)
	go func() { done <- Watchdog(context.Background(), func() error { return nil }) }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watchdog without WATCHDOG_USEC: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watchdog without WATCHDOG_USEC did not return")
	}
}

func TestNotifyBrokenSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "missing.sock"))
	if err := Ready(); err == nil {
		t.Error("Ready to a missing socket: no error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	t.Setenv("WATCHDOG_USEC", "30000000")
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))
	if d, err := WatchdogInterval(); err != nil || d != 15*time.Second {
		t.Errorf("got %v, %v; want 15s", d, err)
	}
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()+1))
	if d, err := WatchdogInterval(); err != nil || d != 0 {
		t.Errorf("other PID: got %v, %v; want 0", d, err)
	}
}

func TestWatchdogPingsWhileHealthy(t *testing.T) {
	conn := fakeNotifySocket(t)
	t.Setenv("WATCHDOG_USEC", "40000") // a ping every 20 ms
	t.Setenv("WATCHDOG_PID", strconv.Itoa(os.Getpid()))

	var sick atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- Watchdog(ctx, func() error {
			if sick.Load() {
				return errors.New("pod-network stuck")
			}
			return nil
		})
	}()
	for range 2 {
		if got := next(t, conn); got != "WATCHDOG=1" {
			t.Fatalf("got %q, want WATCHDOG=1", got)
		}
	}
	sick.Store(true)
	// Drain pings sent before the flip; then the status replaces them.
	for {
		got := next(t, conn)
		if got == "WATCHDOG=1" {
			continue
		}
		if got != "STATUS=unhealthy: pod-network stuck" {
			t.Fatalf("got %q, want the unhealthy status", got)
		}
		break
	}
	if got := next(t, conn); got != "STATUS=unhealthy: pod-network stuck" {
		t.Fatalf("an unhealthy daemon pinged: %q", got)
	}
	sick.Store(false)
	for {
		got := next(t, conn)
		if got == "STATUS=healthy" {
			break
		}
		if got != "STATUS=unhealthy: pod-network stuck" {
			t.Fatalf("got %q while recovering", got)
		}
	}
	if got := next(t, conn); got != "WATCHDOG=1" {
		t.Fatalf("after recovery got %q, want WATCHDOG=1", got)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
