package agent

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"

	"kubeup.dev/kubeup/components/agentconfig"
)

func (c *client) post(path string, body []byte) (int, string) {
	c.t.Helper()
	resp, err := c.http.Post(c.base+path, "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		c.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

// Unit jobs: admin certificate only, the configured units only, never the
// agent's own unit.
func TestUnitActions(t *testing.T) {
	t.Parallel()
	td := newTestDaemon(t, nil, func(c *agentconfig.Config) {
		c.Units = append(c.Units, agentconfig.AgentUnit)
	})
	srv := serve(t, td)
	anon := newClient(t, srv, td.pki.clientTLS(t))
	user := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", []string{"monitoring"})))
	admin := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup})))

	for _, path := range []string{"/v1/units/kubelet.service/stop", "/v1/etcd/restore"} {
		if code, _ := anon.post(path, nil); code != 401 {
			t.Errorf("%s anonymous: %d", path, code)
		}
		if code, body := user.post(path, nil); code != 403 || !strings.Contains(body, AdminGroup) {
			t.Errorf("%s non-admin: %d %q", path, code, body)
		}
	}
	if code, _, _ := user.get("/v1/etcd/snapshot", ""); code != 403 {
		t.Errorf("snapshot non-admin: %d", code)
	}
	if len(td.control.done()) != 0 {
		t.Fatalf("jobs ran for refused requests: %v", td.control.done())
	}

	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{"/v1/units/kubelet.service/restart", `"seconds"`, 200},
		{"/v1/units/containerd.service/stop", `"action": "stop"`, 200},
		{"/v1/units/containerd.service/start", `"unit": "containerd.service"`, 200},
		{"/v1/units/sshd.service/stop", "not one of this machine's units", 403},
		{"/v1/units/kubeup-agent.service/restart", "the agent itself", 403},
		{"/v1/units/kubelet.service/reload", "want start, stop or restart", 404},
	} {
		code, body := admin.post(tc.path, nil)
		if code != tc.code || !strings.Contains(body, tc.body) {
			t.Errorf("%s: %d %q, want %d with %q", tc.path, code, body, tc.code, tc.body)
		}
	}
	want := []string{"restart kubelet.service", "stop containerd.service", "start containerd.service"}
	if got := td.control.done(); !reflect.DeepEqual(got, want) {
		t.Errorf("jobs %v, want %v", got, want)
	}
	td.control.fail = map[string]error{"start kubelet.service": errors.New("systemd job failed")}
	if code, body := admin.post("/v1/units/kubelet.service/start", nil); code != 500 || !strings.Contains(body, "systemd job failed") {
		t.Errorf("failed job: %d %q", code, body)
	}

	// A node has no etcd member.
	if code, body, _ := admin.get("/v1/etcd/snapshot", ""); code != 404 || !strings.Contains(body, "no etcd member") {
		t.Errorf("snapshot on a node: %d %q", code, body)
	}
	if code, body := admin.post("/v1/etcd/restore", []byte("x")); code != 404 {
		t.Errorf("restore on a node: %d %q", code, body)
	}
}

func TestJournalOfATimerIncludesItsService(t *testing.T) {
	t.Parallel()
	td := newTestDaemon(t, nil, func(c *agentconfig.Config) {
		c.Units = append(c.Units, "kubeup-etcd-snapshot.timer")
	})
	args, err := td.JournalArgs("kubeup-etcd-snapshot.timer", "", "")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(args[:4], " "); got != "-u kubeup-etcd-snapshot.timer -u kubeup-etcd-snapshot.service" {
		t.Errorf("journalctl %v", args)
	}
	got := withTimerServices([]string{"etcd.service", "a.timer", "b.timer", "b.service"})
	if want := []string{"etcd.service", "a.timer", "a.service", "b.timer", "b.service"}; !reflect.DeepEqual(got, want) {
		t.Errorf("withTimerServices = %v", got)
	}
}
