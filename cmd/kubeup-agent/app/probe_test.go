package app

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
)

func runCLI(args ...string) (int, string) {
	var out bytes.Buffer
	code := Binary.Main(args, &out, &out)
	return code, out.String()
}

func TestProbeCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			http.Error(w, "not yet", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	if code, out := runCLI("probe", "--url="+srv.URL+"/up", "--timeout=2s"); code != 0 {
		t.Errorf("ready endpoint: exit %d: %s", code, out)
	}
	code, out := runCLI("probe", "--url="+srv.URL+"/down", "--timeout=50ms", "--interval=10ms")
	if code != 1 || !strings.Contains(out, "503 Service Unavailable: not yet") {
		t.Errorf("failing endpoint: exit %d: %s", code, out)
	}
	if code, out := runCLI("probe"); code != 2 || !strings.Contains(out, "give one of --url and --node-of") {
		t.Errorf("no --url: exit %d: %s", code, out)
	}
}

func TestAgentCommandConfigErrors(t *testing.T) {
	path := filepath.Join(t.TempDir(), "agent.yaml")
	code, out := runCLI("agent", "--config="+path)
	if code != 2 || !strings.Contains(out, path) {
		t.Errorf("missing config: exit %d: %s", code, out)
	}
	if code, out := runCLI("--log-level=loud", "version"); code != 2 || !strings.Contains(out, "--log-level") {
		t.Errorf("bad log level: exit %d: %s", code, out)
	}
}
