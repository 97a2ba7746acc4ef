package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/logforward/forwardtest"
)

// TestDaemonForwardsLogs runs the daemon's tasks with log forwarding on: the
// journal (a fake journalctl) and a container log file reach a forward
// server, and /metrics and /v1/status show it.
func TestDaemonForwardsLogs(t *testing.T) {
	srv, err := forwardtest.NewServer()
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop()
	state := t.TempDir()
	td := newTestDaemon(t, nil, func(c *agentconfig.Config) {
		c.Logs = agentconfig.Logs{Forward: srv.Addr, BufferDir: filepath.Join(state, "buffer"),
			BufferMaxBytes: 8 << 20, StateDir: filepath.Join(state, "logs")}
	})
	for i := range 3 {
		td.journal.follow = append(td.journal.follow, fmt.Sprintf(
			`{"__CURSOR":"c%d","__REALTIME_TIMESTAMP":"1767225600%06d","MESSAGE":"journal line %d","_SYSTEMD_UNIT":"kubelet.service","SYSLOG_IDENTIFIER":"kubelet","PRIORITY":"6","_PID":"7"}`, i, i, i))
	}
	podLog := filepath.Join(td.podLogDir, "kube-system_coredns-1_uid", "coredns", "0.log")
	os.MkdirAll(filepath.Dir(podLog), 0o755)
	os.WriteFile(podLog, []byte("2026-01-01T00:00:00.5Z stdout F pod line\n"), 0o644)

	names := func() []string {
		var n []string
		for _, st := range td.sup.Statuses() {
			n = append(n, st.Name)
		}
		return n
	}()
	if want := []string{"kubeconfig", "certificate-scan", "pod-network", "log-forward", "journal-forward", "pod-log-forward", "memory-release"}; !slices.Equal(names, want) {
		t.Errorf("tasks %q", names)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- td.sup.Run(ctx) }()
	waitFor(t, "4 records at the server", func() bool { return srv.Count() == 4 })

	var got []string
	for _, e := range srv.Events() {
		got = append(got, fmt.Sprintf("%s %s %s %s", e.Tag, e.Record["message"], e.Record["machine"], e.Record["source"]))
	}
	slices.Sort(got)
	want := []string{
		"kubeup.journal journal line 0 node-0 journal", "kubeup.journal journal line 1 node-0 journal",
		"kubeup.journal journal line 2 node-0 journal", "kubeup.pods pod line node-0 pod",
	}
	if !slices.Equal(got, want) {
		t.Errorf("records %q", got)
	}
	journalArgs := strings.Join(td.journal.args[0], " ")
	if !strings.Contains(journalArgs, "_SYSTEMD_UNIT=containerd.service _SYSTEMD_UNIT=kubelet.service") ||
		!strings.HasSuffix(journalArgs, "+ SYSLOG_IDENTIFIER=kubeup") {
		t.Errorf("journalctl %s", journalArgs)
	}

	httpSrv := serve(t, td)
	admin := newClient(t, httpSrv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup})))
	_, metrics, _ := admin.get("/metrics", "")
	for _, m := range []string{
		`kubeup_log_entries_read_total{source="journal"} 3`, `kubeup_log_entries_read_total{source="pod"} 1`,
		"kubeup_log_entries_sent_total 4", "kubeup_log_entries_buffered 0", "kubeup_log_forward_up 1",
		`kubeup_log_entries_dropped_total{reason="buffer_full"} 0`, "kubeup_log_forward_errors_total 0",
	} {
		if !strings.Contains(metrics, m+"\n") {
			t.Errorf("metrics lack %q", m)
		}
	}
	_, body, _ := admin.get("/v1/status", "")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatal(err)
	}
	if st.Logs == nil || !st.Logs.Up || st.Logs.Forward != srv.Addr || st.Logs.BufferedRecords != 0 {
		t.Errorf("status logs %+v", st.Logs)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(filepath.Join(state, "logs", "journal.cursor")); err != nil || string(data) != "c2\n" {
		t.Errorf("cursor %q %v", data, err)
	}
}
