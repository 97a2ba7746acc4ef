package ui

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
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
	"kubeup.dev/kubeup/test/kubetest"
)

// Against a real kube-apiserver: the UI addon's manifests are accepted
// with strict field validation, and the UI, authenticated as its
// ServiceAccount, syncs its caches with nothing but the addon's
// ClusterRole and Role, which let it read and nothing else.
func TestIntegrationUIAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	api := kubetest.StartAPIServer(t, "RBAC")
	dir, caFile, host := api.Dir, api.CAFile, api.URL
	adminCrt, adminKey := api.CA.IssueFiles(t, dir, "admin", pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth)
	adminCfg := &rest.Config{Host: host, TLSClientConfig: rest.TLSClientConfig{CAFile: caFile, CertFile: adminCrt, KeyFile: adminKey}}
	admin := kubernetes.NewForConfigOrDie(adminCfg)
	dyn := dynamic.NewForConfigOrDie(adminCfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	kubetest.Wait(t, "the API server and kube-system", 2*time.Minute, func() error {
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

	// A leader, as the controller manager's leader election writes it.
	if _, err := admin.CoordinationV1().Leases("kube-system").Create(ctx, &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "kube-controller-manager", Namespace: "kube-system"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("m1_5d0c6b4e-0a1f-4c43-9a8e-2f3b1c7d9e01"),
			LeaseDurationSeconds: ptr.To[int32](15), RenewTime: &metav1.MicroTime{Time: time.Now()}},
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
		t.Fatal("the UI's caches did not sync with the addon's ClusterRole and Role")
	}
	kubetest.Wait(t, "the node and event in the overview", 30*time.Second, func() error {
		o := s.Overview(ctx)
		if len(o.Nodes) != 1 || len(o.Events) == 0 || o.Events[0].Reason != "Testing" {
			return fmt.Errorf("%d nodes, %d events", len(o.Nodes), len(o.Events))
		}
		if len(o.ControlPlane) == 0 || o.ControlPlane[0].Holder != "m1" {
			return fmt.Errorf("control plane %+v", o.ControlPlane)
		}
		return nil
	})
	if rec := get(t, s.Handler(), http.MethodGet, "/"); rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), "integration test event") {
		t.Errorf("page: %d\n%s", rec.Code, rec.Body)
	}

	// Run, as `kubeup-addons ui --kubeconfig` runs it, serves until its
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
	listen := fmt.Sprintf("127.0.0.1:%d", kubetest.FreePort(t))
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(rctx, Config{Listen: listen, Kubeconfig: kubeconfig, ClusterName: "it"}, slog.New(slog.NewTextHandler(t.Output(), nil)))
	}()
	kubetest.Wait(t, "Run to serve a synced /healthz", 30*time.Second, func() error {
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
	type access struct {
		verb, group, resource string
		allowed               bool
	}
	review := func(ns string, c access) {
		t.Helper()
		sub, res, _ := strings.Cut(c.resource, "/")
		sar, err := admin.AuthorizationV1().SubjectAccessReviews().Create(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
			User: user, Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + addons.Namespace, "system:authenticated"},
			ResourceAttributes: &authzv1.ResourceAttributes{Verb: c.verb, Group: c.group, Resource: sub, Subresource: res, Namespace: ns},
		}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if sar.Status.Allowed != c.allowed {
			t.Errorf("%s %s %s in %q: allowed %v, want %v (%s)", c.verb, c.group, c.resource, ns, sar.Status.Allowed, c.allowed, sar.Status.Reason)
		}
	}
	for _, c := range []access{
		{"list", "", "pods", true}, {"watch", "", "nodes", true}, {"get", "events.k8s.io", "events", true},
		{"list", "", "endpoints", true}, {"get", "", "namespaces", true},
		{"get", "", "secrets", false}, {"list", "", "secrets", false}, {"list", "", "configmaps", false},
		{"create", "", "pods", false}, {"delete", "", "pods", false}, {"patch", "", "nodes", false},
		{"update", "", "nodes", false}, {"create", "", "pods/exec", false}, {"get", "", "pods/log", false},
		{"get", "", "services/proxy", false}, {"get", "", "nodes/proxy", false}, {"create", "", "serviceaccounts/token", false},
		{"list", "coordination.k8s.io", "leases", false},
	} {
		review("default", c)
	}
	// Leases: read in kube-system only, never written.
	for _, c := range []access{{"watch", "coordination.k8s.io", "leases", true}, {"get", "coordination.k8s.io", "leases", true},
		{"update", "coordination.k8s.io", "leases", false}, {"delete", "coordination.k8s.io", "leases", false}} {
		review("kube-system", c)
	}
	review("kube-node-lease", access{"list", "coordination.k8s.io", "leases", false})
	review("", access{"list", "coordination.k8s.io", "leases", false})
}
