package drills

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestCountAnswers(t *testing.T) {
	t.Parallel()
	at := func(sec int64) string { return time.Unix(sec, 5e8).UTC().Format(time.RFC3339Nano) }
	logs := at(100) + " ok\n" + at(101) + " ok\n" + at(102) + " FAIL\nnoise\nok 102\n" + at(103) + " ok\n" + at(110) + " FAIL\n"
	ok, failed := countAnswers(logs, time.Unix(101, 0), time.Unix(103, 9e8))
	if ok != 2 || failed != 1 {
		t.Errorf("ok %d failed %d, want 2 and 1", ok, failed)
	}
}

func TestReport(t *testing.T) {
	t.Parallel()
	r := &Report{Cluster: "c", Machines: 2, Accel: "tcg", FirstBoot: 200, Results: []Result{
		{Drill: "kill -9 etcd", Machine: "master-0", APIBack: 21.5, Healthy: 40, Restarts: 1, Data: "20/20 objects", Pass: true},
		{Drill: "kill -9 kube-apiserver", Machine: "master-0", APIBack: 75, Healthy: 80, Restarts: 1, Data: "20/20 objects", Error: "the API was back after 1m15s, goal 1m0s",
			Start: "from the kill: Starting 5.1s, serving 50.3s"},
		{Drill: "reboot", Machine: "node-0", Healthy: 250, Data: "20/20 objects", Error: "healthy after 4m10s, longer than the first boot (3m20s)"},
	}}
	if r.Passed() {
		t.Error("a failed drill passed")
	}
	dir := t.TempDir()
	if err := r.Save(dir); err != nil {
		t.Fatal(err)
	}
	table, err := os.ReadFile(filepath.Join(dir, "report.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"kill -9 etcd", "22s", "FAIL: healthy after 4m10s", "first boot 3m20s",
		"kill -9 kube-apiserver on master-0, its start from the kill: Starting 5.1s, serving 50.3s\n"} {
		if !strings.Contains(string(table), want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	var back Report
	data, _ := os.ReadFile(filepath.Join(dir, "report.json"))
	if err := json.Unmarshal(data, &back); err != nil || len(back.Results) != 3 || back.Results[0].APIBack != 21.5 || back.Results[1].Start == "" {
		t.Errorf("json round trip: %v %+v", err, back)
	}
	if (&Report{}).Passed() {
		t.Error("an empty report passed")
	}
}

func TestSelected(t *testing.T) {
	all := selected("")
	if !all("kill") || !all("reset") {
		t.Error("an empty KUBEUP_DRILLS_ONLY runs every drill")
	}
	some := selected(" reset, kill:node-0:kubelet ")
	for drill, want := range map[string]bool{"reset": true, "kill:node-0:kubelet": true, "kill": false, "reboot": false, "kill:node-0:containerd": false} {
		if got := some(drill); got != want {
			t.Errorf("selected(%q): got %v, want %v", drill, got, want)
		}
	}
}
