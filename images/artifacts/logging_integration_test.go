package artifacts

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fluent/fluent-logger-golang/fluent"

	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/test/kubetest"
)

// TestIntegrationLoggingPipeline runs the logging addon's pipeline on this
// host: the built VictoriaLogs and collector on loopback, the collector with
// the configuration the addon renders (addresses swapped for loopback), and
// the agents' record shapes sent over the forward protocol with acks. It
// checks what VictoriaLogs stores, the README's query, and what an ack
// means while VictoriaLogs is down (even across a killed collector).
func TestIntegrationLoggingPipeline(t *testing.T) {
	if testing.Short() {
		t.Skip("integration: runs the built VictoriaLogs and collector; skipped under -short")
	}
	set, err := Ensure(context.Background(), Options{
		Only: []string{"victoria-logs", "otelcol"}, Progress: testWriter{t},
		CacheOnly: os.Getenv("KUBEUP_ARTIFACTS_TEST") != "1",
	})
	if errors.Is(err, ErrNotCached) {
		t.Skipf("integration: %v; run `kubeup artifacts --only victoria-logs,otelcol` first or set KUBEUP_ARTIFACTS_TEST=1", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	vlPort, fwdPort := kubetest.FreePort(t), kubetest.FreePort(t)
	vlURL := "http://127.0.0.1:" + strconv.Itoa(vlPort)
	healthAddr := "127.0.0.1:" + strconv.Itoa(kubetest.FreePort(t))
	cfg, err := addons.AggregatorConfig{
		ForwardListen: "127.0.0.1:" + strconv.Itoa(fwdPort),
		OTLPListen:    "127.0.0.1:" + strconv.Itoa(kubetest.FreePort(t)),
		HealthListen:  healthAddr,
		MetricsHost:   "127.0.0.1", MetricsPort: kubetest.FreePort(t),
		LogStoreURL: vlURL,
		QueueDir:    filepath.Join(dir, "queue"),
	}.Render()
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(dir, "otelcol.yaml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "queue"), 0o755); err != nil {
		t.Fatal(err)
	}
	health := "http://" + healthAddr + "/"

	startVL := func() *daemon {
		d := startDaemon(t, dir, "victoria-logs", set.Component("victoria-logs").Path("victoria-logs"),
			"-storageDataPath="+filepath.Join(dir, "vl-data"), "-httpListenAddr=127.0.0.1:"+strconv.Itoa(vlPort),
			"-retentionPeriod=7d")
		waitHTTP(t, d, vlURL+"/health")
		return d
	}
	startCollector := func() *daemon {
		d := startDaemon(t, dir, "otelcol", set.Component("otelcol").Path("otelcol"), "--config="+cfgFile)
		waitHTTP(t, d, health)
		return d
	}
	vl := startVL()
	if ui := httpGet(t, vlURL+"/select/vmui/"); !strings.Contains(strings.ToLower(ui), "<!doctype html") {
		t.Errorf("no web UI at /select/vmui/:\n%s", tail(ui, 10))
	}
	col := startCollector()

	logger, err := fluent.New(fluent.Config{
		FluentHost: "127.0.0.1", FluentPort: fwdPort, RequestAck: true, SubSecondPrecision: true,
		Timeout: 5 * time.Second, WriteTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second, MaxRetry: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer logger.Close()

	now := time.Now().Truncate(time.Microsecond)
	journal := func(msg, unit, machine string, priority int, at time.Time) {
		t.Helper()
		rec := map[string]any{
			"message": msg, "unit": unit, "identifier": strings.TrimSuffix(unit, ".service"), "machine": machine,
			"role": "master", "cluster": "demo", "priority": priority, "level": levelOf(priority), "pid": 4242,
			"source": "journal",
		}
		if err := logger.PostWithTime("kubeup.journal", at, rec); err != nil {
			t.Fatalf("post %q: %v", msg, err)
		}
	}
	journal("apiserver error on master-0", "kube-apiserver.service", "master-0", 3, now.Add(-2*time.Minute))
	journal("apiserver info on master-0", "kube-apiserver.service", "master-0", 6, now.Add(-time.Minute))
	journal("apiserver critical on master-0", "kube-apiserver.service", "master-0", 2, now.Add(-30*time.Second))
	journal("apiserver error on master-1", "kube-apiserver.service", "master-1", 3, now)
	journal("etcd error on master-0", "etcd.service", "master-0", 3, now)
	journal("old apiserver error on master-0", "kube-apiserver.service", "master-0", 3, now.Add(-20*time.Minute))
	pod := map[string]any{"message": "GET /healthz 200", "namespace": "kube-system", "pod": "coredns-abc", "container": "coredns",
		"stream": "stdout", "machine": "node-0", "role": "node", "cluster": "demo", "source": "pod"}
	if err := logger.PostWithTime("kubeup.pods", now, pod); err != nil {
		t.Fatal(err)
	}

	// The stored record: _msg, _time, every field, the stream.
	got := waitQuery(t, vlURL, `_msg:="apiserver error on master-0"`, 1)
	want := map[string]string{
		"_msg": "apiserver error on master-0", "_time": now.Add(-2 * time.Minute).UTC().Format(time.RFC3339Nano),
		"unit": "kube-apiserver.service", "identifier": "kube-apiserver", "machine": "master-0", "role": "master",
		"cluster": "demo", "priority": "3", "level": "err", "pid": "4242", "source": "journal",
		"_stream": `{cluster="demo",machine="master-0",source="journal",unit="kube-apiserver.service"}`,
	}
	for k, v := range want {
		if got[0][k] != v {
			t.Errorf("%s = %q, want %q (record %v)", k, got[0][k], v, got[0])
		}
	}
	for _, k := range []string{"fluent.tag", "scope.name", "severity_text", "message"} {
		if _, ok := got[0][k]; ok {
			t.Errorf("record has field %s: %v", k, got[0])
		}
	}
	p := waitQuery(t, vlURL, `source:=pod`, 1)[0]
	if p["_msg"] != "GET /healthz 200" || p["stream"] != "stdout" ||
		p["_stream"] != `{cluster="demo",container="coredns",machine="node-0",namespace="kube-system",pod="coredns-abc",source="pod"}` {
		t.Errorf("pod record %v", p)
	}

	// The README's query (phrase filters), exact-value filters, and the
	// stream filter (the cheapest: it picks streams before reading blocks).
	for _, q := range []string{
		`_time:10m unit:"kube-apiserver.service" machine:"master-0" priority:<=3`,
		`_time:10m unit:="kube-apiserver.service" machine:="master-0" priority:<=3`,
		`_time:10m _stream:{machine="master-0",unit="kube-apiserver.service"} priority:<=3`,
	} {
		var msgs []string
		for _, r := range waitQuery(t, vlURL, q, 2) {
			msgs = append(msgs, r["_msg"])
		}
		slices.Sort(msgs)
		if !slices.Equal(msgs, []string{"apiserver critical on master-0", "apiserver error on master-0"}) {
			t.Errorf("%s found %q", q, msgs)
		}
	}

	// VictoriaLogs down: the collector still acks (the records are in its
	// persistent queue), keeps them across being killed, and delivers them
	// once VictoriaLogs is back.
	vl.stop(t)
	start := time.Now()
	for i := range 3 {
		journal(fmt.Sprintf("during outage %d", i), "kubelet.service", "node-0", 4, time.Now())
	}
	t.Logf("3 records acked in %s with VictoriaLogs down", time.Since(start).Round(time.Millisecond))
	time.Sleep(500 * time.Millisecond) // let the queue consumers take them (and fail)
	col.kill(t)
	vl = startVL()
	col = startCollector()
	waitQuery(t, vlURL, `"during outage"`, 3)
	_ = col
}

func levelOf(priority int) string {
	return []string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}[priority]
}

// daemon is a process the test started; it is stopped by PID at cleanup.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

func startDaemon(t *testing.T, dir, name, bin string, args ...string) *daemon {
	t.Helper()
	logPath := filepath.Join(dir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() { cmd.Wait(); f.Close(); close(d.done) }()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("%s output:\n%s", name, tail(string(b), 40))
		}
	})
	return d
}

// stop sends SIGTERM to the process and waits; SIGKILL after 15 s.
func (d *daemon) stop(t *testing.T) {
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(15 * time.Second):
		t.Errorf("%s ignored SIGTERM", d.name)
		d.kill(t)
	}
}

// kill ends the process at once (no graceful shutdown) and waits.
func (d *daemon) kill(t *testing.T) {
	d.cmd.Process.Kill()
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		t.Errorf("%s (pid %d) did not die", d.name, d.cmd.Process.Pid)
	}
}

func waitHTTP(t *testing.T, d *daemon, u string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.done:
			b, _ := os.ReadFile(d.log)
			t.Fatalf("%s exited:\n%s", d.name, tail(string(b), 40))
		default:
		}
		if resp, err := http.Get(u); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("%s: %s not healthy after 30s", d.name, u)
}

// waitQuery runs a LogsQL query until it returns want records (30 s).
func waitQuery(t *testing.T, base, query string, want int) []map[string]string {
	t.Helper()
	var got []map[string]string
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		got = logsQL(t, base, query)
		if len(got) >= want {
			return got
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Fatalf("%s: %d records after 30s, want %d: %v", query, len(got), want, got)
	return nil
}

func logsQL(t *testing.T, base, query string) []map[string]string {
	t.Helper()
	resp, err := http.PostForm(base+"/select/logsql/query", url.Values{"query": {query}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("query %s: %s: %s", query, resp.Status, b)
	}
	var out []map[string]string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		var r map[string]string
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("query %s: %v: %s", query, err, sc.Bytes())
		}
		out = append(out, r)
	}
	return out
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
