package drills

import (
	"context"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Check passes only with the namespace active and every object there with
// the data Write gave it; each kind of loss is named.
func TestRestoredCheck(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := Restored{Namespace: "drill-restore", ConfigMaps: 3}
	written := func(t *testing.T) *fake.Clientset {
		cs := fake.NewClientset()
		if err := r.Write(ctx, cs); err != nil {
			t.Fatal(err)
		}
		return cs
	}
	cs := written(t)
	if what, err := r.Check(ctx, cs); err != nil || what != "4/4 objects" {
		t.Fatalf("after Write: %q, %v", what, err)
	}
	for _, tc := range []struct {
		name  string
		spoil func(*fake.Clientset)
		what  string
		want  string
	}{
		{"namespace deleted", func(cs *fake.Clientset) {
			if err := r.Delete(ctx, cs); err != nil {
				t.Fatal(err)
			}
		}, "0/4 objects", "namespace drill-restore is not back"},
		{"namespace terminating", func(cs *fake.Clientset) {
			ns, _ := cs.CoreV1().Namespaces().Get(ctx, r.Namespace, metav1.GetOptions{})
			ns.Status.Phase = corev1.NamespaceTerminating
			cs.CoreV1().Namespaces().Update(ctx, ns, metav1.UpdateOptions{})
		}, "0/4 objects", "back but terminating"},
		{"a configmap lost", func(cs *fake.Clientset) {
			cs.CoreV1().ConfigMaps(r.Namespace).Delete(ctx, "restore-01", metav1.DeleteOptions{})
		}, "3/4 objects", "configmap restore-01"},
		{"a configmap changed", func(cs *fake.Clientset) {
			cm, _ := cs.CoreV1().ConfigMaps(r.Namespace).Get(ctx, "restore-02", metav1.GetOptions{})
			cm.Data["n"] = "7"
			cs.CoreV1().ConfigMaps(r.Namespace).Update(ctx, cm, metav1.UpdateOptions{})
		}, "3/4 objects", "configmap restore-02: data"},
		{"the secret lost", func(cs *fake.Clientset) {
			cs.CoreV1().Secrets(r.Namespace).Delete(ctx, secretName, metav1.DeleteOptions{})
		}, "3/4 objects", "secret drill-secret"},
		{"the secret changed", func(cs *fake.Clientset) {
			s, _ := cs.CoreV1().Secrets(r.Namespace).Get(ctx, secretName, metav1.GetOptions{})
			s.Data["binary"] = []byte{0, 1, 2}
			cs.CoreV1().Secrets(r.Namespace).Update(ctx, s, metav1.UpdateOptions{})
		}, "3/4 objects", "secret drill-secret: data differs"},
	} {
		cs := written(t)
		tc.spoil(cs)
		what, err := r.Check(ctx, cs)
		if err == nil || !strings.Contains(err.Error(), tc.want) || what != tc.what {
			t.Errorf("%s: %q, %v; want %q and an error with %q", tc.name, what, err, tc.what, tc.want)
		}
	}
}

// Deleting a namespace that is not there is not an error (the first run
// on a cluster).
func TestDeleteMissingNamespace(t *testing.T) {
	t.Parallel()
	if err := deleteNamespace(context.Background(), fake.NewClientset(), "nope"); err != nil {
		t.Error(err)
	}
}
