package e2e_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"kubeup.dev/kubeup/provision/cluster"
	"kubeup.dev/kubeup/provision/config"
	e2e "kubeup.dev/kubeup/test/e2e"
)

// imagesLoadTest: `kubeup images load` puts an image no machine has into
// every machine's containerd, and a pod runs it with imagePullPolicy
// Always under a registry name that does not exist: the kubelet's pull
// must be answered by the machine's own registry mirror (kubeup-agent,
// which containerd's hosts.toml names first for every registry). The image
// is the cached testbox archive under a name of its own.
func imagesLoadTest(t *testing.T, ctx context.Context, a *cluster.Access, st *cluster.State, dataDir string) {
	t.Helper()
	home, _ := os.UserHomeDir()
	found, _ := filepath.Glob(filepath.Join(home, ".cache/kubeup/images/testbox/*/root/var/lib/kubeup/images/testbox.tar"))
	if len(found) == 0 {
		t.Error("images load: no cached testbox archive (make build caches it)")
		return
	}
	img, err := tarball.ImageFromPath(found[0], nil)
	if err != nil {
		t.Fatalf("images load: %s: %v", found[0], err)
	}
	ref := fmt.Sprintf("registry.kubeup.dev/e2e-loaded:%d", time.Now().Unix())
	archive := filepath.Join(t.TempDir(), "loaded.tar")
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(archive, tag, img); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, err := kubeup(t, ctx, dataDir, "images", "load", "--name", st.Name, archive)
	if err != nil {
		t.Errorf("kubeup images load: %v", err)
		return
	}
	for _, m := range st.Machines {
		if !slices.ContainsFunc(strings.Split(out, "\n"), func(l string) bool { return strings.Contains(l, m.Name+":") && strings.Contains(l, ref) }) {
			t.Errorf("images load: no line for %s importing %s:\n%s", m.Name, ref, out)
		}
	}
	t.Logf("images load: %s on %d machines in %s", ref, len(st.Machines), time.Since(start).Round(time.Second))
	imagesLoadByName(t, ctx, st, dataDir)

	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "loaded-image", Namespace: "default"},
		Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers: []corev1.Container{{Name: "run", Image: ref, ImagePullPolicy: corev1.PullAlways,
				Command: []string{"/bin/busybox", "sh", "-c", "echo loaded-image-runs"}}},
		},
	}
	pods := a.Clientset.CoreV1().Pods("default")
	if err := e2e.Create(ctx, func(ctx context.Context) error { _, err := pods.Create(ctx, p, metav1.CreateOptions{}); return err }); err != nil {
		t.Errorf("images load: create the pod: %v", err)
		return
	}
	defer func() { _ = pods.Delete(context.WithoutCancel(ctx), p.Name, metav1.DeleteOptions{}) }()
	for {
		got, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
		if err == nil && got.Status.Phase == corev1.PodSucceeded {
			t.Logf("images load: a pod ran %s (imagePullPolicy Always, pulled from the machine's mirror) %s after the load", ref, time.Since(start).Round(time.Second))
			return
		}
		if err == nil {
			for _, cs := range got.Status.ContainerStatuses {
				if w := cs.State.Waiting; w != nil && (w.Reason == "ErrImagePull" || w.Reason == "ImagePullBackOff") {
					t.Errorf("images load: the pod's pull of %s (the machine's mirror should answer it): %s: %s", ref, w.Reason, w.Message)
					return
				}
			}
		}
		if time.Since(start) > 5*time.Minute || (err == nil && got.Status.Phase == corev1.PodFailed) {
			t.Errorf("images load: the pod of %s: %v %+v", ref, err, got.Status)
			return
		}
		time.Sleep(3 * time.Second)
	}
}

// imagesLoadByName: an image kubeup builds, named rather than given as a
// file (testbox, the cached archive), goes to the nodes alone with
// --role node: a line for each node naming its reference, none for a
// master.
func imagesLoadByName(t *testing.T, ctx context.Context, st *cluster.State, dataDir string) {
	t.Helper()
	start := time.Now()
	out, err := kubeup(t, ctx, dataDir, "images", "load", "--name", st.Name, "--role", "node", "testbox")
	if err != nil {
		t.Errorf("kubeup images load --role node testbox: %v", err)
		return
	}
	lines := strings.Split(out, "\n")
	for _, m := range st.Machines {
		has := slices.ContainsFunc(lines, func(l string) bool {
			return strings.HasPrefix(strings.TrimSpace(l), m.Name+":") && strings.Contains(l, "registry.kubeup.dev/testbox:")
		})
		if has != (m.Role == config.RoleNode) {
			t.Errorf("images load --role node testbox: %s (%s) loaded %v:\n%s", m.Name, m.Role, has, out)
		}
	}
	t.Logf("images load: testbox by name on the nodes in %s", time.Since(start).Round(time.Second))
}
