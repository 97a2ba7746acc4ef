package addonmanager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/test/kubetest"
)

// TestLeaderElectionAgainstAPIServer runs two addon managers, as two
// masters would, against one API server: one leads and does the work, the
// other stands by (healthy, and idle); the leader's clean stop hands over
// to the other at once; and a leader that loses the Lease exits with an
// error.
func TestLeaderElectionAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	api := kubetest.StartAPIServer(t, "Node,RBAC", "--enable-admission-plugins", "NodeRestriction")
	dir, caFile := api.Dir, api.CAFile
	adminCrt, adminKey := api.CA.IssueFiles(t, dir, "admin", pkix.Name{CommonName: "system:kubeup-addon-manager", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth)
	kubeconfig := filepath.Join(dir, "addon-manager.conf")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: api.URL, CertificateAuthority: caFile}
	kc.AuthInfos["u"] = &clientcmdapi.AuthInfo{ClientCertificate: adminCrt, ClientKey: adminKey}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	kc.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	restCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	admin := kubernetes.NewForConfigOrDie(restCfg)
	addons := writeFiles(t, map[string]string{"00-objects.yaml": `apiVersion: v1
kind: Namespace
metadata: {name: leader-test, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: reconciled, namespace: leader-test, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
data: {key: declared}
`})

	// Two instances, as on two masters: same kubeconfig and manifests, their
	// own machine name and port.
	type instance struct {
		name   string
		url    string
		cancel context.CancelFunc
		done   chan error
	}
	start := func(machine string) *instance {
		port := kubetest.FreePort(t)
		cfg := components.AddonManagerConfig{
			APIVersion: ConfigAPIVersion, Kind: ConfigKind, Machine: machine, Kubeconfig: kubeconfig,
			ManifestDirs: []string{addons}, Resync: metav1.Duration{Duration: 5 * time.Second},
			Listen:   fmt.Sprintf("127.0.0.1:%d", port),
			CertFile: api.ServingCert, KeyFile: api.ServingKey, ClientCAFile: caFile,
			Signer: components.AddonManagerSigner{CertFile: caFile, KeyFile: api.CAKeyFile(t), Duration: metav1.Duration{Duration: time.Hour}},
		}
		if err := ValidateConfig(cfg); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		in := &instance{name: machine, url: fmt.Sprintf("https://127.0.0.1:%d", port), cancel: cancel, done: make(chan error, 1)}
		log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", machine)
		go func() { in.done <- Run(ctx, cfg, log) }()
		return in
	}
	// stop cancels an instance and returns what its Run returned.
	stop := func(in *instance) error {
		t.Helper()
		in.cancel()
		select {
		case err := <-in.done:
			in.done <- err // for a second stop
			return err
		case <-time.After(time.Minute):
			t.Fatalf("%s: Run did not return within a minute of its context's end", in.name)
			return nil
		}
	}
	a, b := start("master-1"), start("master-2")
	instances := map[string]*instance{a.name: a, b.name: b}
	t.Cleanup(func() {
		a.cancel()
		b.cancel()
		<-a.done
		<-b.done
	})

	wait := func(what string, timeout time.Duration, cond func() (bool, error)) time.Duration {
		t.Helper()
		begin := time.Now()
		var last error
		for deadline := begin.Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			ok, err := cond()
			if ok {
				return time.Since(begin)
			}
			last = err
		}
		t.Fatalf("timed out after %s waiting for %s (last error: %v)", timeout, what, last)
		return 0
	}
	ctx := t.Context()
	leases := admin.CoordinationV1().Leases(leaseNamespace)
	holder := func() (string, error) {
		l, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return "", err
		}
		return *l.Spec.HolderIdentity, nil
	}
	cms := admin.CoreV1().ConfigMaps("leader-test")

	// HTTPS to the instances: /healthz anonymous, /metrics with a client
	// certificate of the cluster CA.
	roots := x509.NewCertPool()
	roots.AddCert(api.CA.Cert)
	clientCert := api.CA.TLSCertificate(t, pkix.Name{CommonName: "prometheus"}, x509.ExtKeyUsageClientAuth, time.Time{})
	httpc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{clientCert}}}}
	get := func(in *instance, path string) (int, string, error) {
		resp, err := httpc.Get(in.url + path)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body), err
	}
	// metric reads an unlabelled metric of an instance's /metrics.
	metric := func(in *instance, name string) (string, error) {
		code, body, err := get(in, "/metrics")
		if err != nil || code != http.StatusOK {
			return "", fmt.Errorf("%s /metrics: %d, %v", in.name, code, err)
		}
		m := regexp.MustCompile(`(?m)^` + name + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return "", fmt.Errorf("%s /metrics has no %s", in.name, name)
		}
		return m[1], nil
	}
	healthy := func(in *instance) (bool, error) {
		code, body, err := get(in, "/healthz")
		if err != nil {
			return false, err
		}
		return code == http.StatusOK, fmt.Errorf("%s /healthz: %d %s", in.name, code, strings.TrimSpace(body))
	}

	// One of them leads, and the addons are applied.
	var leaderName string
	wait("a holder of the Lease and the addons", 2*time.Minute, func() (bool, error) {
		h, err := holder()
		if err != nil {
			return false, err
		}
		if instances[h] == nil {
			return false, fmt.Errorf("holder %q", h)
		}
		leaderName = h
		cm, err := cms.Get(ctx, "reconciled", metav1.GetOptions{})
		return err == nil && cm.Data["key"] == "declared", err
	})
	leader := instances[leaderName]
	standby := a
	if leader == a {
		standby = b
	}
	t.Logf("%s leads, %s stands by", leader.name, standby.name)

	// Both healthy; the metric tells which leads; the standby never synced.
	for _, in := range []*instance{leader, standby} {
		wait(in.name+" healthy", 30*time.Second, func() (bool, error) { return healthy(in) })
	}
	// A few retry periods: the Lease stays with the leader, and both run.
	for range 3 {
		time.Sleep(retryPeriod)
		if h, err := holder(); err != nil || h != leader.name {
			t.Fatalf("Lease holder = %q, %v; want %s kept", h, err, leader.name)
		}
		for _, in := range []*instance{leader, standby} {
			select {
			case err := <-in.done:
				in.done <- err
				t.Fatalf("%s: Run returned %v", in.name, err)
			default:
			}
		}
	}
	for _, c := range []struct {
		in         *instance
		leader     string
		neverSyncs bool
	}{{leader, "1", false}, {standby, "0", true}} {
		if v, err := metric(c.in, "kubeup_addon_manager_leader"); err != nil || v != c.leader {
			t.Errorf("%s: kubeup_addon_manager_leader = %q, %v; want %s", c.in.name, v, err, c.leader)
		}
		v, err := metric(c.in, "kubeup_addon_last_sync_timestamp_seconds")
		if err != nil {
			t.Fatal(err)
		}
		if (v == "0") != c.neverSyncs {
			t.Errorf("%s: kubeup_addon_last_sync_timestamp_seconds = %s; the leader syncs, the standby does not", c.in.name, v)
		}
	}

	// The leader stops cleanly: it releases the Lease, the standby takes it
	// over and reconciles.
	if err := stop(leader); err != nil {
		t.Errorf("%s: Run after its context ended = %v, want nil", leader.name, err)
	}
	took := wait(standby.name+" holding the Lease", 40*time.Second, func() (bool, error) {
		h, err := holder()
		return h == standby.name, fmt.Errorf("holder %q (%v)", h, err)
	})
	t.Logf("%s took the Lease over %s after %s stopped", standby.name, took.Round(100*time.Millisecond), leader.name)
	if err := cms.Delete(ctx, "reconciled", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("the deleted ConfigMap back from the new leader", 30*time.Second, func() (bool, error) {
		cm, err := cms.Get(ctx, "reconciled", metav1.GetOptions{})
		return err == nil && cm.Data["key"] == "declared", err
	})
	wait(standby.name+" healthy as leader", 30*time.Second, func() (bool, error) { return healthy(standby) })
	if v, err := metric(standby, "kubeup_addon_manager_leader"); err != nil || v != "1" {
		t.Errorf("%s: kubeup_addon_manager_leader after taking over = %q, %v; want 1", standby.name, v, err)
	}

	// Someone else takes the Lease: the leader gives up within its renew
	// deadline, and Run returns an error for systemd to restart it.
	if err := retry.RetryOnConflict(retry.DefaultRetry, func() error { // the leader renews meanwhile
		l, err := leases.Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			return err
		}
		l.Spec.HolderIdentity = ptr("intruder")
		l.Spec.LeaseDurationSeconds = ptr[int32](3600)
		l.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
		_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	select {
	case err := <-standby.done:
		standby.done <- err
		if err == nil || !strings.Contains(err.Error(), "lost the leadership") || !strings.Contains(err.Error(), "intruder") {
			t.Errorf("%s: Run after losing the Lease = %v, want an error", standby.name, err)
		}
		t.Logf("%s: Run returned %s after the Lease was taken: %v", standby.name, time.Since(begin).Round(100*time.Millisecond), err)
	case <-time.After(retryPeriod + renewDeadline + 20*time.Second):
		t.Fatalf("%s: Run still running %s after losing the Lease", standby.name, time.Since(begin).Round(time.Second))
	}
	// It stopped working: a deletion now stays.
	if err := cms.Delete(ctx, "reconciled", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if _, err := cms.Get(ctx, "reconciled", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the ConfigMap deleted after the leader exited: %v; want it to stay deleted", err)
	}
	if h, err := holder(); err != nil || h != "intruder" {
		t.Errorf("Lease holder at the end = %q, %v; want the intruder's", h, err)
	}
}
