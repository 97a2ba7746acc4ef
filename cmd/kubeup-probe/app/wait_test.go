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

// Bad flags of the API server's combined commands are usage errors (exit 2)
// before anything changes: no wait, no gate, no weight.
func TestGateAndWeightUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"wait", "--url=http://127.0.0.1:1/", "--open-gate=API Server"}, "--open-gate: gate name"},
		{[]string{"wait", "--url=http://127.0.0.1:1/", "--cpu-weight=etcd.service"}, "etcd.service"},
		{[]string{"gate", "close", "Bad_Name", "--port=6443"}, "gate name"},
		{[]string{"gate", "close", "apiserver-starting"}, "give --port"},
		{[]string{"gate", "shut", "apiserver-starting"}, "want close or open"},
		{[]string{"gate", "close", "apiserver-starting", "--port=6443", "--allow=localhost"}, "--allow"},
		{[]string{"gate", "close", "apiserver-starting", "--port=6443", "--cpu-weight=etcd.service=x"}, "etcd.service"},
		{[]string{"cpu-weight", "etcd.service=0"}, "etcd.service"},
	} {
		if code, out := clitest.RunCombined(Binary, tc.args...); code != 2 || !strings.Contains(out, tc.want) {
			t.Errorf("%q: exit %d, %s; want 2 and %q", tc.args, code, out, tc.want)
		}
	}
}
