package app

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"kubeup.dev/kubeup/cmd/internal/clitest"
)

func TestWaitCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if code, out := clitest.RunCombined(Binary, "wait", "--url="+srv.URL+"/up", "--timeout=2s"); code != 0 {
		t.Errorf("ready endpoint: exit %d: %s", code, out)
	}
	code, out := clitest.RunCombined(Binary, "wait", "--url="+srv.URL+"/down", "--timeout=50ms", "--interval=10ms")
	if code != 1 || !strings.Contains(out, "503 Service Unavailable: not yet") {
		t.Errorf("failing endpoint: exit %d: %s", code, out)
	}
	if code, out := clitest.RunCombined(Binary, "wait"); code != 2 || !strings.Contains(out, "give one of --url and --node-of") {
		t.Errorf("no --url: exit %d: %s", code, out)
	}
}
