package agent

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The host-side client against a real agent handler: status, journal and
// static pod manifests, with an admin certificate.
func TestClient(t *testing.T) {
	td := newTestDaemon(t, nil)
	srv := serve(t, td)
	cfg := td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup}))
	c := &Client{Base: srv.URL, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}}
	ctx := context.Background()
	st, err := c.Status(ctx)
	if err != nil || st.Machine != "node-0" {
		t.Fatalf("status %+v %v", st, err)
	}
	j, err := c.Journal(ctx, "kubelet.service", 10)
	if err != nil || !strings.Contains(j, "started") {
		t.Errorf("journal %q %v", j, err)
	}
	pod := []byte("apiVersion: v1\nkind: Pod\nmetadata:\n  name: static-web\nspec:\n  containers:\n  - name: web\n    image: registry.kubeup.dev/testbox:1\n")
	if err := c.PutManifest(ctx, "static-web", pod); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(td.staticPodDir(), "static-web.yaml"))
	if err != nil || string(got) != string(pod) {
		t.Errorf("manifest %q %v", got, err)
	}
	for _, bad := range []string{
		"kind: Deployment\n",
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",                                    // no containers
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: [{name: web}]}\n", // no image
		"apiVersion: v1\nkind: Pod\nspec: {containers: [{name: web, image: testbox}]}\n",      // no name
		"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\nspec: {containers: {name: web}}\n",   // not a list
	} {
		if err := c.PutManifest(ctx, "bad", []byte(bad)); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("accepted as a Pod: %q: %v", bad, err)
		}
	}
	if err := c.PutManifest(ctx, "../etc", pod); err == nil {
		t.Error("a path was accepted as a manifest name")
	}
	if err := c.DeleteManifest(ctx, "static-web"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(td.staticPodDir(), "static-web.yaml")); !os.IsNotExist(err) {
		t.Error("manifest not deleted")
	}
	// Without the admin group: refused.
	user := &Client{Base: srv.URL, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "x", []string{"y"}))}}}
	if err := user.PutManifest(ctx, "static-web", pod); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("non-admin write: %v", err)
	}
}
