package addonmanager

import (
	"context"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	certificatesv1 "k8s.io/api/certificates/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/test/kubetest"
)

func TestIntegrationAgainstAPIServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	api := kubetest.StartAPIServer(t, "Node,RBAC", "--enable-admission-plugins", "NodeRestriction")
	dir, caFile := api.Dir, api.CAFile
	servingCrt, servingKey := api.ServingCert, api.ServingKey
	adminCrt, adminKey := api.CA.IssueFiles(t, dir, "admin", pkix.Name{CommonName: "system:kubeup-addon-manager", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth)
	nodeCrt, nodeKey := api.CA.IssueFiles(t, dir, "node", pkix.Name{CommonName: "system:node:worker-1", Organization: []string{"system:nodes"}}, x509.ExtKeyUsageClientAuth)

	server := api.URL
	kubeconfig := filepath.Join(dir, "addon-manager.conf")
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: caFile}
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
	dyn := dynamic.NewForConfigOrDie(restCfg)
	nodeClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: server, TLSClientConfig: rest.TLSClientConfig{
		CAFile: caFile, CertFile: nodeCrt, KeyFile: nodeKey}})

	addons := writeFiles(t, map[string]string{
		"00-ns.yaml": `apiVersion: v1
kind: Namespace
metadata: {name: addons-test, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
`,
		"10-objects.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: reconciled, namespace: addons-test, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
data: {key: declared}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: ensured, namespace: addons-test, labels: {addonmanager.kubernetes.io/mode: EnsureExists}}
data: {key: declared}
---
apiVersion: v1
kind: Secret
metadata: {name: token, namespace: addons-test, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
stringData: {token: s3cret}
---
apiVersion: example.com/v1
kind: Widget
metadata: {name: w, namespace: addons-test, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
spec: {size: 3}
`,
		"05-crd.yaml": `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
spec:
  group: example.com
  names: {kind: Widget, plural: widgets, singular: widget, listKind: WidgetList}
  scope: Namespaced
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
`,
		"20-prune-me.yaml": `apiVersion: v1
kind: ConfigMap
metadata: {name: prune-me, namespace: addons-test, labels: {addonmanager.kubernetes.io/mode: Reconcile}}
`,
	})
	cfg := components.AddonManagerConfig{
		APIVersion: ConfigAPIVersion, Kind: ConfigKind, Kubeconfig: kubeconfig,
		ManifestDirs: []string{addons}, Resync: metav1.Duration{Duration: 5 * time.Second},
		Listen:   fmt.Sprintf("127.0.0.1:%d", kubetest.FreePort(t)),
		CertFile: servingCrt, KeyFile: servingKey, ClientCAFile: caFile,
		Signer: components.AddonManagerSigner{CertFile: caFile, KeyFile: api.CAKeyFile(t), Duration: metav1.Duration{Duration: time.Hour}},
	}
	if err := ValidateConfig(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, cfg, slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	wait := func(what string, timeout time.Duration, cond func() (bool, error)) {
		t.Helper()
		var last error
		for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
			ok, err := cond()
			if ok {
				return
			}
			last = err
		}
		t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
	}
	cms := admin.CoreV1().ConfigMaps("addons-test")
	widgets := dyn.Resource(schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}).Namespace("addons-test")

	// Everything is applied, the custom resource once its CRD is served.
	wait("the addons", 2*time.Minute, func() (bool, error) {
		if _, err := widgets.Get(ctx, "w", metav1.GetOptions{}); err != nil {
			return false, err
		}
		_, err := cms.Get(ctx, "prune-me", metav1.GetOptions{})
		return err == nil, err
	})
	sec, err := admin.CoreV1().Secrets("addons-test").Get(ctx, "token", metav1.GetOptions{})
	if err != nil || string(sec.Data["token"]) != "s3cret" {
		t.Fatalf("secret = %v, %v", sec, err)
	}

	// Deleted: re-created from the watch event, well before the resync.
	if err := cms.Delete(ctx, "reconciled", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("the deleted ConfigMap back", 3*time.Second, func() (bool, error) {
		_, err := cms.Get(ctx, "reconciled", metav1.GetOptions{})
		return err == nil, err
	})
	// Edited: restored. EnsureExists: the edit stays.
	for _, name := range []string{"reconciled", "ensured"} {
		cm, err := cms.Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cm.Data["key"] = "edited"
		if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
	}
	wait("the edit undone", 3*time.Second, func() (bool, error) {
		cm, err := cms.Get(ctx, "reconciled", metav1.GetOptions{})
		return err == nil && cm.Data["key"] == "declared", err
	})
	// A removed manifest: pruned at the next sync.
	if err := os.Remove(filepath.Join(addons, "20-prune-me.yaml")); err != nil {
		t.Fatal(err)
	}
	wait("the pruned ConfigMap gone", 15*time.Second, func() (bool, error) {
		_, err := cms.Get(ctx, "prune-me", metav1.GetOptions{})
		return apierrors.IsNotFound(err), err
	})
	if cm, err := cms.Get(ctx, "ensured", metav1.GetOptions{}); err != nil || cm.Data["key"] != "edited" {
		t.Errorf("EnsureExists ConfigMap = %v, %v; want the user's edit kept", cm, err)
	}

	// Node labels, and the kubelet serving CSR of a registered node.
	// As a kubelet registers: with its role label and its addresses.
	if _, err := nodeClient.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: "worker-1", Labels: map[string]string{components.RoleLabel: "node"}},
		Status: corev1.NodeStatus{Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: "10.0.0.11"}, {Type: corev1.NodeHostName, Address: "worker-1"},
		}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	wait("the worker role label", 5*time.Second, func() (bool, error) {
		n, err := admin.CoreV1().Nodes().Get(ctx, "worker-1", metav1.GetOptions{})
		_, ok := n.Labels[WorkerRoleLabel]
		return err == nil && ok, err
	})
	csr := newCSR(t, csrTemplate{dns: []string{"worker-1"}, ips: []string{"10.0.0.11"}})
	csr.ObjectMeta = metav1.ObjectMeta{GenerateName: "csr-"}
	csr.Spec.Username, csr.Spec.Groups = "", nil // set by the API server from the requester
	created, err := nodeClient.CertificatesV1().CertificateSigningRequests().Create(ctx, csr, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	wait("the CSR approved", 5*time.Second, func() (bool, error) {
		c, err := admin.CertificatesV1().CertificateSigningRequests().Get(ctx, created.Name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range c.Status.Conditions {
			if cond.Type == certificatesv1.CertificateApproved && cond.Reason == ApprovedReason {
				return true, nil
			}
		}
		return false, fmt.Errorf("conditions %+v", c.Status.Conditions)
	})
}
