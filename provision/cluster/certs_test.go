package cluster

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"kubeup.dev/kubeup/provision/config"
	"kubeup.dev/kubeup/provision/pki"
	"kubeup.dev/kubeup/provision/render"
)

// The host renews its admin certificate for the cluster's leaf lifetime
// and rewrites the kubeconfig that embeds it.
func TestRenewAdminCertificate(t *testing.T) {
	dataDir := t.TempDir()
	dir := Dir(dataDir, "demo")
	cfg := testConfig(t, "demo", 1, 0, func(c *config.Cluster) { c.Spec.PKI.LeafLifetime = "30m" })
	issued := time.Now().Add(-25 * time.Minute)
	o := render.PKIOptions(cfg)
	o.Now = func() time.Time { return issued }
	old, err := pki.LoadOrGenerate(filepath.Join(dir, pkiDir), render.PKICluster(cfg), o)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, renderDir), 0o755); err != nil {
		t.Fatal(err)
	}
	yaml := "apiVersion: kubeup.dev/v1alpha1\nkind: Cluster\nmetadata: {name: demo}\nspec:\n  pki: {leafLifetime: 30m}\n"
	if err := os.WriteFile(filepath.Join(dir, renderDir, "cluster.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	st := &State{Name: "demo", APIServerPort: 16443}
	if err := st.save(dir); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	admin, err := RenewAdminCertificate(dataDir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := old.Certificate(pki.KubernetesCA)
	was, _ := old.Certificate("admin")
	if err := admin.CheckSignatureFrom(ca); err != nil || admin.Subject.String() != was.Subject.String() {
		t.Errorf("renewed admin %v: %v", admin.Subject, err)
	}
	if admin.NotAfter.Before(start.Add(29*time.Minute)) || admin.NotAfter.After(time.Now().Add(31*time.Minute)) || !admin.NotAfter.After(was.NotAfter) {
		t.Errorf("renewed admin valid until %v (was %v)", admin.NotAfter, was.NotAfter)
	}
	kc, err := clientcmd.LoadFromFile(filepath.Join(dir, kubeconfigFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range kc.AuthInfos {
		if string(u.ClientCertificateData) != string(pemOf(t, dataDir)) {
			t.Error("the kubeconfig does not carry the renewed certificate")
		}
	}
	if got := kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster].Server; got != "https://127.0.0.1:16443" {
		t.Errorf("server %s", got)
	}
	if _, err := RenewAdminCertificate(t.TempDir(), "demo"); err == nil {
		t.Error("renewed the admin certificate of a cluster that does not exist")
	}
}

func pemOf(t *testing.T, dataDir string) []byte {
	t.Helper()
	b, err := LoadBundle(dataDir, "demo")
	if err != nil {
		t.Fatal(err)
	}
	cert, _, ok := b.Cert("admin")
	if !ok {
		t.Fatal("no admin certificate")
	}
	return cert
}
