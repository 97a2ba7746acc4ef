package ui

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
)

// Against a real kube-apiserver: the UI addon's manifests are accepted
// with strict field validation, and the UI, authenticated as its
// ServiceAccount, syncs its caches with nothing but the addon's
// ClusterRole, which lets it read and nothing else.
func TestIntegrationUIAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	apiserverBin, etcdBin := kubeBinaries(t)
	dir := t.TempDir()
	caCert, caKey := newCA(t)
	caFile := filepath.Join(dir, "ca.crt")
	writePEM(t, caFile, "CERTIFICATE", caCert.Raw)
	servingCrt, servingKey := issue(t, caCert, caKey, dir, "apiserver", pkix.Name{CommonName: "kube-apiserver"}, x509.ExtKeyUsageServerAuth)
	adminCrt, adminKey := issue(t, caCert, caKey, dir, "admin", pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth)
	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	saDER, _ := x509.MarshalECPrivateKey(saKey)
	saFile := filepath.Join(dir, "sa.key")
	writePEM(t, saFile, "EC PRIVATE KEY", saDER)

	etcdPort, peerPort, apiPort := freePort(t), freePort(t), freePort(t)
	etcdURL := fmt.Sprintf("http://127.0.0.1:%d", etcdPort)
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	start(t, etcdBin, "--data-dir", filepath.Join(dir, "etcd"), "--listen-client-urls", etcdURL, "--advertise-client-urls", etcdURL,
		"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL, "--initial-cluster", "default="+peerURL,
		"--listen-metrics-urls", fmt.Sprintf("http://127.0.0.1:%d", freePort(t)))
	start(t, apiserverBin, "--etcd-servers", etcdURL, "--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		"--secure-port", fmt.Sprint(apiPort), "--tls-cert-file", servingCrt, "--tls-private-key-file", servingKey,
		"--client-ca-file", caFile, "--service-account-key-file", saFile, "--service-account-signing-key-file", saFile,
		"--service-account-issuer", "https://kubernetes.default.svc", "--authorization-mode", "RBAC",
		"--service-cluster-ip-range", "10.96.0.0/16", "--endpoint-reconciler-type", "none")

	host := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	adminCfg := &rest.Config{Host: host, TLSClientConfig: rest.TLSClientConfig{CAFile: caFile, CertFile: adminCrt, KeyFile: adminKey}}
	admin := kubernetes.NewForConfigOrDie(adminCfg)
	dyn := dynamic.NewForConfigOrDie(adminCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wait(t, "the API server and kube-system", 2*time.Minute, func() error {
		_, err := admin.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{})
		return err
	})

	// The addon, exactly as rendered, with strict server-side validation.
	c := &components.Cluster{Name: "it", DNSDomain: "cluster.local", DNSServiceIP: netip.MustParseAddr("10.96.0.10"),
		Addons: components.Addons{UI: true, Monitoring: true, Logging: true},
		Images: components.Images{UI: "registry.kubeup.dev/kubeup-addons:0123456789abcdef"}}
	for _, obj := range addons.UI(c).Objects {
		data, err := yaml.Marshal(obj)
		if err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal(data, &u.Object); err != nil {
			t.Fatal(err)
		}
		gvk := u.GroupVersionKind()
		plural := strings.ToLower(gvk.Kind) + "s"
		gvr := schema.GroupVersionResource{Group: gvk.Group, Version: gvk.Version, Resource: plural}
		var ri dynamic.ResourceInterface = dyn.Resource(gvr)
		if ns := u.GetNamespace(); ns != "" {
			ri = dyn.Resource(gvr).Namespace(ns)
		}
		if _, err := ri.Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
			t.Fatalf("create %s %s: %v", gvk.Kind, u.GetName(), err)
		}
	}

	// Something to show.
	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "m1",
		Labels: map[string]string{"node-role.kubernetes.io/control-plane": ""}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.CoreV1().Events("default").Create(ctx, &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{Name: "m1.1", Namespace: "default"},
		InvolvedObject: corev1.ObjectReference{Kind: "Node", Name: "m1"}, Type: corev1.EventTypeWarning, Reason: "Testing",
		Message: "integration test event", LastTimestamp: metav1.Now(),
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// The UI as its ServiceAccount.
	tok, err := admin.CoreV1().ServiceAccounts(addons.Namespace).CreateToken(ctx, addons.UIName,
		&authnv1.TokenRequest{Spec: authnv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	uiClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: host, BearerToken: tok.Status.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}, UserAgent: UserAgent})
	s, err := NewServer(uiClient, Config{Listen: ":0", ClusterName: "it"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, scancel := context.WithCancel(ctx)
	s.Start(sctx)
	defer func() {
		scancel()
		s.Shutdown()
	}()
	syncCtx, syncCancel := context.WithTimeout(sctx, 30*time.Second)
	defer syncCancel()
	if !s.WaitForSync(syncCtx) {
		t.Fatal("the UI's caches did not sync with the addon's ClusterRole")
	}
	wait(t, "the node and event in the overview", 30*time.Second, func() error {
		o := s.Overview(ctx)
		if len(o.Nodes) != 1 || len(o.Events) == 0 || o.Events[0].Reason != "Testing" {
			return fmt.Errorf("%d nodes, %d events", len(o.Nodes), len(o.Events))
		}
		return nil
	})
	if rec := get(t, s.Handler(), http.MethodGet, "/"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "integration test event") {
		t.Errorf("page: %d\n%s", rec.Code, rec.Body)
	}

	// Run, as `kubeup-agent ui --kubeconfig` runs it, serves until its
	// context ends.
	kubeconfig := filepath.Join(dir, "ui.conf")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: host, CertificateAuthority: caFile}
	kc.AuthInfos["ui"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "ui"}
	kc.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*kc, kubeconfig); err != nil {
		t.Fatal(err)
	}
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(rctx, Config{Listen: listen, Kubeconfig: kubeconfig, ClusterName: "it"}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	}()
	wait(t, "Run to serve a synced /healthz", 30*time.Second, func() error {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("healthz %d", resp.StatusCode)
		}
		return nil
	})
	resp, err := http.Post("http://"+listen+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST to Run's server: %d", resp.StatusCode)
	}
	rcancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("Run did not return after its context ended")
	}

	// What the ServiceAccount may do, as the API server decides it.
	user := "system:serviceaccount:" + addons.Namespace + ":" + addons.UIName
	for _, c := range []struct {
		verb, group, resource string
		allowed               bool
	}{
		{"list", "", "pods", true}, {"watch", "", "nodes", true}, {"get", "events.k8s.io", "events", true},
		{"list", "", "endpoints", true}, {"get", "", "namespaces", true},
		{"get", "", "secrets", false}, {"list", "", "secrets", false}, {"list", "", "configmaps", false},
		{"create", "", "pods", false}, {"delete", "", "pods", false}, {"patch", "", "nodes", false},
		{"update", "", "nodes", false}, {"create", "", "pods/exec", false}, {"get", "", "pods/log", false},
		{"get", "", "services/proxy", false}, {"get", "", "nodes/proxy", false}, {"create", "", "serviceaccounts/token", false},
	} {
		sub, res, _ := strings.Cut(c.resource, "/")
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + addons.Namespace, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: c.verb, Group: c.group, Resource: sub, Subresource: res, Namespace: "default"},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allowed {
			t.Errorf("%s %s %s: allowed %v, want %v (%s)", c.verb, c.group, c.resource, sar.Status.Allowed, c.allowed, sar.Status.Reason)
		}
	}
}

// kubeBinaries finds kube-apiserver and etcd: $KUBEUP_TEST_BIN_DIR, or the
// artifacts kubeup's build caches (as components/addonmanager's test does).
func kubeBinaries(t *testing.T) (apiserver, etcd string) {
	t.Helper()
	if dir := os.Getenv("KUBEUP_TEST_BIN_DIR"); dir != "" {
		return filepath.Join(dir, "kube-apiserver"), filepath.Join(dir, "etcd")
	}
	home, _ := os.UserHomeDir()
	find := func(component, name string) string {
		m, _ := filepath.Glob(filepath.Join(home, ".cache/kubeup/artifacts", component, "*/root/usr/local/bin", name))
		if len(m) == 0 {
			t.Skipf("no %s: set KUBEUP_TEST_BIN_DIR to a directory with kube-apiserver and etcd, or build the artifacts", name)
		}
		return m[0]
	}
	return find("kubernetes", "kube-apiserver"), find("etcd", "etcd")
}

func wait(t *testing.T, what string, timeout time.Duration, cond func() error) {
	t.Helper()
	var last error
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if last = cond(); last == nil {
			return
		}
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// start runs a command until the test ends; it is stopped by its PID.
func start(t *testing.T, name string, args ...string) {
	t.Helper()
	logFile, err := os.Create(filepath.Join(t.TempDir(), filepath.Base(name)+".log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			out, _ := os.ReadFile(logFile.Name())
			if len(out) > 4000 {
				out = out[len(out)-4000:]
			}
			t.Logf("%s output (tail):\n%s", filepath.Base(name), out)
		}
	})
}

func newCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, k
}

func issue(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, dir, name string, subject pkix.Name, usage x509.ExtKeyUsage) (crt, key string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: subject,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	crt, key = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	writePEM(t, crt, "CERTIFICATE", der)
	writePEM(t, key, "EC PRIVATE KEY", kder)
	return crt, key
}

func writePEM(t *testing.T, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}
