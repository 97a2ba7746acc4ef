package addons

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/test/kubetest"
)

// A real kube-apiserver run with kubeup's admission, audit and TLS flags and
// files: the privileged host pod is refused in default, every addon's pods
// are admitted in kube-system labelled as the addon manager labels it, a
// deletion is in the audit log with who made it and its body, a Secret's
// body is not, and TLS clients weaker than the cluster's list are refused.
func TestIntegrationAPIServerHardening(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd and kube-apiserver; skipped with -short")
	}
	dir := t.TempDir()
	c := allAddons()
	c.ServiceCIDR, c.PodSecurity = netip.MustParsePrefix("10.96.0.0/16"), components.PodSecurity{Enforce: "baseline", Audit: "restricted", Warn: "restricted"}
	c.Images = components.Images{Pause: "pause:1", CoreDNS: "coredns:1", Testbox: "testbox:1", Prometheus: "prometheus:1",
		LogStore: "victoria-logs:1", LogAggregator: "otelcol:1", UI: "kubeup-addons:1"}
	ctx := components.Context{Cluster: c, Machine: c.Masters[0], Secrets: components.Secrets{EncryptionKey: bytes.Repeat([]byte{1}, 32)}}
	api := components.APIServer{}
	files, err := api.Files(ctx)
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, api.ImageFiles()...)
	moved := map[string]string{}
	for _, f := range files {
		p := filepath.Join(dir, filepath.Base(f.Path))
		if err := os.WriteFile(p, f.Content, 0o600); err != nil {
			t.Fatal(err)
		}
		moved[f.Path] = p
	}
	auditLog := filepath.Join(dir, "audit", "audit.log")
	flags := api.Flags(ctx)
	var args []string
	for _, k := range []string{"allow-privileged", "enable-admission-plugins", "admission-control-config-file", "audit-policy-file", "audit-log-path",
		"audit-log-format", "audit-log-maxage", "audit-log-maxbackup", "audit-log-maxsize", "tls-min-version", "tls-cipher-suites",
		"profiling", "anonymous-auth"} {
		v := flags[k]
		if p, ok := moved[v]; ok {
			v = p
		}
		if k == "audit-log-path" {
			v = auditLog
		}
		args = append(args, "--"+k+"="+v)
	}
	srv := kubetest.StartAPIServer(t, "RBAC", args...)
	crt, key := srv.CA.IssueFiles(t, srv.Dir, "admin", pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}}, x509.ExtKeyUsageClientAuth)
	cs := kubernetes.NewForConfigOrDie(&rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAFile: srv.CAFile, CertFile: crt, KeyFile: key}})
	bg := context.Background()
	// The API server creates its system namespaces and priority classes
	// (the addons' pods ask for system-cluster-critical) shortly after it
	// serves.
	kubetest.Wait(t, "kube-apiserver, its default and kube-system namespaces and system priority classes", 2*time.Minute, func() error {
		for _, ns := range []string{"default", "kube-system"} {
			if _, err := cs.CoreV1().Namespaces().Get(bg, ns, metav1.GetOptions{}); err != nil {
				return err
			}
		}
		_, err := cs.SchedulingV1().PriorityClasses().Get(bg, "system-cluster-critical", metav1.GetOptions{})
		return err
	})

	// No controller-manager here to make ServiceAccounts, which the
	// ServiceAccount admission plugin wants to exist before PodSecurity
	// is asked.
	ensureSA := func(ns, name string) {
		if name == "" {
			name = "default"
		}
		_, err := cs.CoreV1().ServiceAccounts(ns).Create(bg, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	ensureSA("default", "")

	// Pod Security: refused in default, as every namespace without labels.
	host := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "host-root"},
		Spec: corev1.PodSpec{HostPID: true, HostNetwork: true,
			Containers: []corev1.Container{{Name: "shell", Image: "busybox", SecurityContext: &corev1.SecurityContext{Privileged: ptr.To(true)},
				VolumeMounts: []corev1.VolumeMount{{Name: "host", MountPath: "/host"}}}},
			Volumes: []corev1.Volume{{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/"}}}}},
	}
	_, err = cs.CoreV1().Pods("default").Create(bg, host, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `violates PodSecurity "baseline:latest"`) {
		t.Errorf("the privileged host pod in default: %v, want refused by PodSecurity baseline", err)
	}
	// The addons' pods, in kube-system labelled as the addon manager does.
	enabled, err := Enabled(c)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := cs.CoreV1().Namespaces().Get(bg, Namespace, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range AddonNamespace(c, enabled).Labels {
		if ns.Labels == nil {
			ns.Labels = map[string]string{}
		}
		ns.Labels[k] = v
	}
	if _, err := cs.CoreV1().Namespaces().Update(bg, ns, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, a := range enabled {
		for name, tmpl := range podTemplates(a) {
			ensureSA(Namespace, tmpl.Spec.ServiceAccountName)
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: tmpl.Labels}, Spec: tmpl.Spec}
			if _, err := cs.CoreV1().Pods(Namespace).Create(bg, pod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
				t.Errorf("addon %s: pod %s refused in %s: %v", a.Name, name, Namespace, err)
			}
		}
	}

	// Audit: a Deployment deleted by the admin, a Secret written.
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: appsv1.DeploymentSpec{
		Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx"}}}}}}
	if _, err := cs.AppsV1().Deployments("default").Create(bg, dep, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.AppsV1().Deployments("default").Delete(bg, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}, StringData: map[string]string{"password": "hunter2-in-audit"}}
	if _, err := cs.CoreV1().Secrets("default").Create(bg, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	type event struct {
		Level, Stage, Verb string
		User               struct{ Username string }
		ObjectRef          *struct{ Resource, Namespace, Name string }
		ResponseStatus     *struct{ Code int }
		RequestObject      json.RawMessage
	}
	var deletion, secretWrite *event
	kubetest.Wait(t, "the audit events", time.Minute, func() error {
		data, err := os.ReadFile(auditLog)
		if err != nil {
			return err
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		sc.Buffer(nil, 4<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) != nil || e.ObjectRef == nil {
				continue
			}
			if e.Verb == "delete" && e.ObjectRef.Resource == "deployments" && e.ObjectRef.Name == "web" {
				deletion = &e
			}
			if e.Verb == "create" && e.ObjectRef.Resource == "secrets" && e.ObjectRef.Name == "s" {
				secretWrite = &e
			}
		}
		if deletion == nil || secretWrite == nil {
			return os.ErrNotExist
		}
		if bytes.Contains(data, []byte("hunter2-in-audit")) || bytes.Contains(data, []byte("aHVudGVyMi1pbi1hdWRpdA")) {
			t.Error("a Secret's value is in the audit log")
		}
		return nil
	})
	if deletion.User.Username != "kubernetes-admin" || deletion.Level != "Request" || deletion.Stage != "ResponseComplete" ||
		deletion.ResponseStatus == nil || deletion.ResponseStatus.Code != 200 || deletion.ObjectRef.Namespace != "default" {
		t.Errorf("the deletion's audit event: %+v", deletion)
	}
	if secretWrite.Level != "Metadata" || len(secretWrite.RequestObject) != 0 {
		t.Errorf("the Secret's audit event: level %s, request body %s", secretWrite.Level, secretWrite.RequestObject)
	}

	// TLS: only TLS 1.2+ with the cluster's suites.
	addr := strings.TrimPrefix(srv.URL, "https://")
	weak := []*tls.Config{
		{MaxVersion: tls.VersionTLS12, CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA}},
		{MinVersion: tls.VersionTLS11, MaxVersion: tls.VersionTLS11},
	}
	for _, cfg := range weak {
		cfg.InsecureSkipVerify = true
		if conn, err := tls.Dial("tcp", addr, cfg); err == nil {
			conn.Close()
			t.Errorf("kube-apiserver served a weak TLS client: %+v", cfg)
		}
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, MaxVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatalf("a TLS 1.2 client: %v", err)
	}
	defer conn.Close()
	if got := tls.CipherSuiteName(conn.ConnectionState().CipherSuite); !strings.Contains(strings.Join(components.TLSCipherSuites(), ","), got) {
		t.Errorf("TLS 1.2 suite %s is not in the cluster's list", got)
	}
}
