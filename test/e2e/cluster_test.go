package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/provision/cluster"
	// The external test package (the drills import e2e); the helpers are
	// e2e's own.
	. "kubeup.dev/kubeup/test/e2e"
)

// kubeup runs the built CLI (make build) and returns its output.
func kubeup(t *testing.T, ctx context.Context, dataDir string, args ...string) (string, error) {
	t.Helper()
	return Kubeup(t, ctx, dataDir, args...)
}

func repoRoot() string { return RepoRoot() }

// logsDeadline is how soon after up every unit's logs must be searchable:
// 57 s and 1m22s measured on 2026-12-04; on a slow host under TCG the API server's proxy
// to the log store answered 503 for the first minute after its pod was
// Ready (its endpoints not yet published by a loaded controller-manager);
// on 2026-12-07, with the node saturated (load 22-29), the test pod's line
// arrived 3m09s and 3m26s after up, its pod started late. Completeness is
// the log-loss test's; this bounds the latency on a slow host.
const logsDeadline = 5 * time.Minute

// TestE2ECluster is the promise in one test: `kubeup up` brings a local
// cluster to Ready; every unit's logs and a pod's output are in the log
// store within a minute; `kubeup verify` passes; a privileged host pod is
// refused outside kube-system while every addon runs; `kubeup verify --cis`
// passes; every machine listens exactly where its role's reviewed list
// says; every Prometheus target is up; no log line is lost while the
// aggregator is down; the addon manager restores a deleted addon, and the
// audit trail in the log store says who deleted it; kubectl on the host
// works with the kubeconfig kubeup wrote; and `kubeup down` leaves nothing
// (twice).
func TestE2ECluster(t *testing.T) {
	if !Enabled() {
		t.Skip("end-to-end test: run with make e2e (KUBEUP_E2E=1); it boots a cluster of VMs")
	}
	if _, err := os.Stat(filepath.Join(repoRoot(), "bin", "pulumi-resource-kubeup")); err != nil {
		t.Fatal("run make build first: ", err)
	}
	// 75 minutes: make e2e's own timeout is 80, .ci/run's 90 in all.
	ctx, cancel := context.WithTimeout(context.Background(), 75*time.Minute)
	defer cancel()
	dataDir := t.TempDir()
	name := "e2e"
	timings := filepath.Join(t.TempDir(), "timings.json")
	// The account of the run is the last thing it prints (after down).
	steps := NewSteps()
	t.Cleanup(func() { t.Log(steps.Summary()) })
	t.Cleanup(func() {
		// Whatever happened, nothing of the cluster may stay running.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		if _, err := kubeup(t, cctx, dataDir, "down", "--name", name); err != nil {
			t.Errorf("down in cleanup: %v", err)
		}
	})

	// A cluster with SSH access for the checks that need a shell on a
	// machine (the log-loss test writes to a node's journal).
	key, pub, err := NewKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cfgFile := filepath.Join(t.TempDir(), "cluster.yaml")
	// The master boots by UEFI (the default) and the node by BIOS, so that
	// both firmwares boot an image in every run. The default 2 vCPUs each:
	// with one each (2026-12-07, TCG, 2 host CPUs) the master collapsed at
	// rest (CPU pressure 99%, NotReady, the addon manager's restore missed
	// its 5 minutes) after passing verify.
	cfg := fmt.Sprintf("apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: %s}\nspec:\n  nodes: {firmware: bios}\n  ssh:\n    authorizedKeys: [%q]\n", name, pub)
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := kubeup(t, ctx, dataDir, "up", "--config", cfgFile, "--timings", timings, "--timeout", UpPhaseTimeout.String())
	steps.UpPhases(out)
	if st, serr := cluster.LoadState(dataDir, name); serr == nil {
		steps.Machines(dataDir, st)
	}
	steps.Done("up")
	if err != nil {
		t.Fatalf("kubeup up: %v", err)
	}
	upDone := time.Now()
	st, err := cluster.LoadState(dataDir, name)
	if err != nil {
		t.Fatal(err)
	}
	a, err := cluster.Connect(dataDir, name)
	if err != nil {
		t.Fatal(err)
	}
	if err := RetryReads(a); err != nil {
		t.Fatal(err)
	}
	images, err := cluster.Images(filepath.Join(repoRoot(), "bin"))
	if err != nil {
		t.Fatal(err)
	}

	// Logs of every unit on every machine, and a pod's output, reach the
	// store within a minute of up.
	marker := fmt.Sprintf("kubeup-e2e-marker-%d", time.Now().UnixNano())
	if err := PodPrints(ctx, a, images.Testbox, marker); err != nil {
		t.Fatal(err)
	}
	var missing []string
	for {
		missing, err = UnitsWithoutLogs(ctx, a, st)
		if err == nil && len(missing) == 0 {
			if n, _, cerr := CountMessages(ctx, a, marker); cerr == nil && n > 0 {
				break
			}
			missing = []string{"the test pod's output"}
		}
		if time.Since(upDone) > logsDeadline {
			t.Errorf("%s after up, no logs yet from %v (%v)", logsDeadline, missing, err)
			break
		}
		time.Sleep(3 * time.Second)
	}
	t.Logf("logs of every unit and of a pod in the store %s after up", time.Since(upDone).Round(time.Second))
	steps.Done("logs")

	out, err = kubeup(t, ctx, dataDir, "verify", "--name", name)
	if err != nil || !strings.Contains(out, "checks passed") {
		t.Errorf("kubeup verify: %v", err)
	}
	steps.Done("verify")
	// Hardening: Pod Security, the CIS items, the listening surface.
	podSecurityTest(t, ctx, a, images.Testbox)
	steps.Done("pod-security")
	cisTest(t, ctx, dataDir, name)
	steps.Done("cis")
	socketsTest(t, ctx, dataDir, st)
	steps.Done("sockets")

	// Every component's metrics: each job up == 1 for every machine, within
	// 15 minutes of up, and in any case over three scrapes (60 s apart)
	// from the first look: when verify ran past those 15 minutes on a slow
	// host, one scrape of the API server's metrics that missed its timeout
	// at that moment failed the run although the next one succeeded.
	targetsBy := upDone.Add(15 * time.Minute)
	if floor := time.Now().Add(3 * time.Minute); floor.After(targetsBy) {
		targetsBy = floor
	}
	for {
		missing, err = TargetsUp(ctx, a, st)
		if err == nil && len(missing) == 0 {
			break
		}
		if time.Now().After(targetsBy) {
			t.Errorf("Prometheus targets not up: %v (%v)", missing, err)
			break
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("every Prometheus target up == 1 %s after up", time.Since(upDone).Round(time.Second))
	steps.Done("targets")
	if out, err := kubeup(t, ctx, dataDir, "logs", "--name", name, "--unit", "kube-apiserver", "--machine", "master-0", "--since", "10m", "--limit", "5"); err != nil || !strings.Contains(out, "kube-apiserver.service") {
		t.Errorf("kubeup logs: %v", err)
	}

	firmwareTest(t, ctx, st, key)
	lossTest(t, ctx, a, st, key)
	steps.Done("log-loss")
	addonRestoreTest(t, ctx, a)
	steps.Done("addon-restore")
	auditTest(t, ctx, a, dataDir, name) // finds addonRestoreTest's deletion
	agentMemoryTest(t, ctx, a, st)
	steps.Done("audit+agent-rss")
	drillsTest(t, ctx, dataDir, name, key)
	steps.Done("api-kill")

	var tm cluster.Timings
	if data, err := os.ReadFile(timings); err == nil && json.Unmarshal(data, &tm) == nil {
		for _, p := range tm.Phases {
			t.Logf("timing: %7.1fs %s", p.Seconds, p.Name)
		}
		t.Logf("peak memory: QEMU %d MiB, kubeup %d MiB", tm.PeakQEMUMiB, tm.PeakKubeupMiB)
	} else {
		t.Errorf("timings file %s: %v", timings, err)
	}

	// kubectl from the host with the kubeconfig kubeup wrote.
	kubectl, err := filepath.Glob(filepath.Join(os.Getenv("HOME"), ".cache", "kubeup", "artifacts", "kubernetes", "*", "root", "usr", "local", "bin", "kubectl"))
	if err == nil && len(kubectl) > 0 {
		path, _ := kubeup(t, ctx, dataDir, "kubeconfig", "--name", name, "--path")
		nodes, err := exec.CommandContext(ctx, kubectl[0], "--kubeconfig", strings.TrimSpace(path), "get", "nodes", "-o", "wide").CombinedOutput()
		t.Logf("kubectl get nodes:\n%s", nodes)
		if err != nil || strings.Count(string(nodes), " Ready ") != 2 {
			t.Errorf("kubectl get nodes: %v", err)
		}
	}
	agentTunnelTest(t, ctx, a, st, dataDir, images.Pause)
	steps.Done("tunnel")
	imagesLoadTest(t, ctx, a, st, dataDir)
	steps.Done("images-load")
	if out, err := kubeup(t, ctx, dataDir, "status", "--name", name); err != nil || !strings.Contains(out, "kubelet=active") {
		t.Errorf("status: %v", err)
	}

	start := time.Now()
	if _, err := kubeup(t, ctx, dataDir, "down", "--name", name); err != nil {
		t.Fatalf("down: %v", err)
	}
	t.Logf("down took %s", time.Since(start).Round(100*time.Millisecond))
	steps.Done("rest+down")
	if left := cluster.Leftovers(dataDir, name); len(left) > 0 {
		t.Errorf("processes left after down: %v", left)
	}
	if _, err := os.Stat(cluster.Dir(dataDir, name)); !os.IsNotExist(err) {
		t.Errorf("cluster directory left after down: %v", err)
	}
	out, err = kubeup(t, ctx, dataDir, "down", "--name", name)
	if err != nil || !strings.Contains(out, "nothing to destroy") {
		t.Errorf("second down: %v %q", err, out)
	}
}

// firmwareTest asks each machine's kernel how it was booted: the master
// (default firmware) by UEFI, the node (firmware: bios) by BIOS.
func firmwareTest(t *testing.T, ctx context.Context, st *cluster.State, key string) {
	t.Helper()
	for _, m := range st.Machines {
		want := "uefi"
		if m.Role == "node" {
			want = "bios"
		}
		s := SSH{Port: m.SSHPort, Key: key, User: "kubeup"}
		out, err := s.Run(ctx, "if [ -d /sys/firmware/efi ]; then echo uefi; else echo bios; fi")
		if got := strings.TrimSpace(out); err != nil || got != want {
			t.Errorf("%s booted by %q, want %s (%v)", m.Name, got, want, err)
		}
	}
}

// lossTest stops the log aggregator (and the addon manager, which would
// bring it straight back), writes 10,000 numbered lines through a node's
// journal, starts the aggregator again and finds every line exactly once.
func lossTest(t *testing.T, ctx context.Context, a *cluster.Access, st *cluster.State, key string) {
	t.Helper()
	var master, node cluster.MachineState
	for _, m := range st.Machines {
		if m.Role == "master" && master.Name == "" {
			master = m
		}
		if m.Role == "node" && node.Name == "" {
			node = m
		}
	}
	ms := SSH{Port: master.SSHPort, Key: key, User: "kubeup"}
	ns := SSH{Port: node.SSHPort, Key: key, User: "kubeup"}
	// Read and written again on a timeout or a conflict (Retry).
	scale := func(n int32) error {
		return Retry(ctx, 5*time.Minute, func(ctx context.Context) error {
			s, err := a.Clientset.AppsV1().Deployments("kube-system").GetScale(ctx, "log-aggregator", metav1.GetOptions{})
			if err != nil {
				return err
			}
			s.Spec.Replicas = n
			_, err = a.Clientset.AppsV1().Deployments("kube-system").UpdateScale(ctx, "log-aggregator", s, metav1.UpdateOptions{})
			return err
		})
	}
	if _, err := ms.Run(ctx, "sudo systemctl stop kubeup-addon-manager"); err != nil {
		t.Fatal(err)
	}
	if err := scale(0); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	for {
		pods, err := a.Clientset.CoreV1().Pods("kube-system").List(wctx, metav1.ListOptions{LabelSelector: "k8s-app=log-aggregator"})
		if err == nil && len(pods.Items) == 0 {
			break
		}
		if wctx.Err() != nil {
			t.Fatalf("the aggregator did not stop: %v", err)
		}
		time.Sleep(2 * time.Second)
	}
	prefix := fmt.Sprintf("loss-test-%d-", time.Now().UnixNano())
	if _, err := ns.Run(ctx, fmt.Sprintf("seq 1 10000 | sed 's/^/%s/' | systemd-cat -t kubeup", prefix)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Second) // the agent finds the aggregator gone and buffers
	if n, _, err := CountMessages(ctx, a, prefix); err != nil || n != 0 {
		t.Errorf("with the aggregator stopped the store already has %d lines (%v)", n, err)
	}
	if err := scale(1); err != nil {
		t.Fatal(err)
	}
	if _, err := ms.Run(ctx, "sudo systemctl start kubeup-addon-manager"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		// Delivery is at least once (logforward's doc): every line must
		// arrive; a line stored twice (a write the store answered after
		// the exporter's timeout, then retried) is counted, not failed.
		total, distinct, err := CountMessages(ctx, a, prefix)
		if err == nil && distinct >= 10000 {
			if distinct != 10000 {
				t.Errorf("after the outage: %d distinct lines, want 10000", distinct)
			}
			t.Logf("10000 buffered lines in the store %s after the aggregator came back (%d stored twice)", time.Since(start).Round(time.Second), total-distinct)
			return
		}
		if time.Since(start) > 10*time.Minute {
			t.Errorf("after the outage only %d of 10000 lines (%d distinct) reached the store (%v)", total, distinct, err)
			return
		}
		time.Sleep(5 * time.Second)
	}
}

// addonSyncTest: the addon manager's syncs are complete — every manifest
// directory there, nothing refused — so they prune as well as apply (a
// missing directory or a refused manifest stops pruning).
func addonSyncTest(t *testing.T, ctx context.Context, a *cluster.Access) {
	t.Helper()
	refused, err := a.Query(ctx, `max_over_time(kubeup_addon_manifest_objects{mode="refused"}[5m])`)
	if err != nil || len(refused) == 0 {
		t.Errorf("addon manager refused manifests: no series (%v)", err)
	}
	for _, s := range refused {
		if s.Value != "0" {
			t.Errorf("addon manager on %s refused %s manifests or objects in the last 5 min", s.Labels["machine"], s.Value)
		}
	}
	// The log-loss test restarted the addon manager, whose gauge is 0 until
	// its first complete sync after the start and Prometheus' next scrape
	// (60 s): on a loaded master that took over 2 minutes (2026-12-07), so
	// the age is waited for, up to 4 minutes.
	deadline := time.Now().Add(4 * time.Minute)
	for {
		age, err := a.Query(ctx, `time() - kubeup_addon_last_successful_sync_timestamp_seconds`)
		var stale []string
		if err != nil || len(age) == 0 {
			stale = append(stale, fmt.Sprintf("no series (%v)", err))
		}
		for _, s := range age {
			if v, err := strconv.ParseFloat(s.Value, 64); err != nil || v > 300 {
				stale = append(stale, fmt.Sprintf("%s: last complete sync %s s ago (resync is every minute)", s.Labels["machine"], s.Value))
			}
		}
		if len(stale) == 0 {
			for _, s := range age {
				t.Logf("addon manager on %s: last complete sync %s s ago, nothing refused", s.Labels["machine"], s.Value)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("addon manager: %v", stale)
			return
		}
		time.Sleep(10 * time.Second)
	}
}

// addonRestoreTest deletes an addon's Deployment and waits for the addon
// manager to restore it.
func addonRestoreTest(t *testing.T, ctx context.Context, a *cluster.Access) {
	t.Helper()
	deps := a.Clientset.AppsV1().Deployments("kube-system")
	old, err := deps.Get(ctx, "kubeup-ui", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods := a.Clientset.CoreV1().Pods("kube-system")
	selector := metav1.FormatLabelSelector(old.Spec.Selector)
	before, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	// A delete that timed out may have been done: gone is what it asks.
	if err := Retry(ctx, 5*time.Minute, func(ctx context.Context) error {
		return deps.Delete(ctx, "kubeup-ui", metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &old.UID}})
	}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatal(err)
	}
	start := time.Now()
	restored := false
	for time.Since(start) < 5*time.Minute {
		d, err := deps.Get(ctx, "kubeup-ui", metav1.GetOptions{})
		if err == nil && d.UID != old.UID {
			t.Logf("the addon manager restored the deleted kubeup-ui Deployment in %s", time.Since(start).Round(100*time.Millisecond))
			restored = true
			break
		}
		time.Sleep(time.Second)
	}
	if !restored {
		t.Error("the addon manager did not restore the deleted kubeup-ui Deployment within 5 minutes")
		return
	}
	addonSyncTest(t, ctx, a)
	// The deleted Deployment's pods terminate (garbage collection, the
	// kubelet, containerd): the restore is over only when they are gone
	// (within 8 min),
	// and the drills that follow start from a settled cluster.
	for {
		left := 0
		now, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			now = &corev1.PodList{}
		}
		for _, p := range before.Items {
			for _, q := range now.Items {
				if p.UID == q.UID {
					left++
				}
			}
		}
		if err == nil && left == 0 {
			t.Logf("the deleted Deployment's %d pods gone %s after its deletion", len(before.Items), time.Since(start).Round(time.Second))
			return
		}
		// Under TCG containerd's task deletes time out on a busy master and
		// are retried (StopPodSandbox every 2 min): 4m22s has been seen.
		if time.Since(start) > 8*time.Minute {
			t.Errorf("%d of the deleted Deployment's pods still there 8 minutes after its deletion (%v)", left, err)
			return
		}
		time.Sleep(2 * time.Second)
	}
}
