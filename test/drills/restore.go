package drills

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Restored is what the etcd-restore drill writes before its snapshot and
// deletes after it: a namespace of ConfigMaps and a Secret, each with its
// own data, which the restore must bring back whole.
type Restored struct {
	Namespace  string
	ConfigMaps int
}

// secretName is the Restored namespace's Secret (encrypted at rest, so
// the restore also proves the masters still decrypt what the snapshot
// holds).
const secretName = "drill-secret"

func (r Restored) configMaps() []corev1.ConfigMap {
	var out []corev1.ConfigMap
	for i := range r.ConfigMaps {
		out = append(out, corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("restore-%02d", i), Labels: map[string]string{"drill": "etcd-restore"}},
			Data:       map[string]string{"n": strconv.Itoa(i), "payload": fmt.Sprintf("configmap %d of %s", i, r.Namespace)},
		})
	}
	return out
}

func (r Restored) secret() corev1.Secret {
	return corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: secretName},
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{"password": []byte("restored-" + r.Namespace), "binary": {0, 1, 2, 0xfe, 0xff}},
	}
}

// Write creates the namespace and its objects (an earlier run's namespace
// is deleted first).
func (r Restored) Write(ctx context.Context, cs kubernetes.Interface) error {
	if err := deleteNamespace(ctx, cs, r.Namespace); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, cm := range r.configMaps() {
		if _, err := cs.CoreV1().ConfigMaps(r.Namespace).Create(ctx, &cm, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	s := r.secret()
	_, err := cs.CoreV1().Secrets(r.Namespace).Create(ctx, &s, metav1.CreateOptions{})
	return err
}

// Delete deletes the namespace and waits until it is gone (its objects
// with it).
func (r Restored) Delete(ctx context.Context, cs kubernetes.Interface) error {
	return deleteNamespace(ctx, cs, r.Namespace)
}

// Check finds the namespace active (not left terminating) and every object
// in it with its data; it says what it found, and the error names every
// object missing or changed.
func (r Restored) Check(ctx context.Context, cs kubernetes.Interface) (string, error) {
	want := len(r.configMaps()) + 1
	ns, err := cs.CoreV1().Namespaces().Get(ctx, r.Namespace, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return fmt.Sprintf("0/%d objects", want), fmt.Errorf("namespace %s is not back", r.Namespace)
	case err != nil:
		return "", err
	case ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating:
		return fmt.Sprintf("0/%d objects", want), fmt.Errorf("namespace %s is back but terminating", r.Namespace)
	}
	var problems []error
	found := 0
	for _, w := range r.configMaps() {
		got, err := cs.CoreV1().ConfigMaps(r.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
		switch {
		case err != nil:
			problems = append(problems, fmt.Errorf("configmap %s: %w", w.Name, err))
		case !maps.Equal(got.Data, w.Data):
			problems = append(problems, fmt.Errorf("configmap %s: data %v, want %v", w.Name, got.Data, w.Data))
		default:
			found++
		}
	}
	w := r.secret()
	got, err := cs.CoreV1().Secrets(r.Namespace).Get(ctx, w.Name, metav1.GetOptions{})
	switch {
	case err != nil:
		problems = append(problems, fmt.Errorf("secret %s: %w", w.Name, err))
	case !maps.EqualFunc(got.Data, w.Data, func(a, b []byte) bool { return string(a) == string(b) }):
		problems = append(problems, fmt.Errorf("secret %s: data differs from what was written", w.Name))
	default:
		found++
	}
	what := fmt.Sprintf("%d/%d objects", found, want)
	if err := errors.Join(problems...); err != nil {
		return what, fmt.Errorf("namespace %s after the restore: %w", r.Namespace, err)
	}
	return what, nil
}

// deleteNamespace deletes a namespace, if there is one, and waits until it
// is gone.
func deleteNamespace(ctx context.Context, cs kubernetes.Interface, name string) error {
	err := cs.CoreV1().Namespaces().Delete(ctx, name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete namespace %s: %w", name, err)
	}
	for {
		_, err := cs.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("namespace %s not gone: %w", name, ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}
