package drills

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"kubeup.dev/kubeup/components"
)

// Data is what the drills write before they start and look for after each
// one: a namespace of numbered ConfigMaps.
type Data struct {
	Namespace string
	Count     int
}

// Write creates the namespace and the ConfigMaps (the namespace of an
// earlier run on the same cluster is deleted first).
func (d Data) Write(ctx context.Context, cs kubernetes.Interface) error {
	if err := deleteNamespace(ctx, cs, d.Namespace); err != nil {
		return err
	}
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: d.Namespace}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Pods are refused until the controller-manager has made the
	// namespace's default ServiceAccount, a moment after the namespace.
	if err := wait.PollUntilContextTimeout(ctx, time.Second, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().ServiceAccounts(d.Namespace).Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	}); err != nil {
		return fmt.Errorf("namespace %s: no default ServiceAccount after 2m: %w", d.Namespace, err)
	}
	for i := range d.Count {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("data-%03d", i)},
			Data: map[string]string{"n": strconv.Itoa(i)}}
		if _, err := cs.CoreV1().ConfigMaps(d.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	return nil
}

// Check finds every ConfigMap with its content; it says what it found.
func (d Data) Check(ctx context.Context, cs kubernetes.Interface) (string, error) {
	list, err := cs.CoreV1().ConfigMaps(d.Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return "", err
	}
	found := 0
	for _, cm := range list.Items {
		var i int
		if _, err := fmt.Sscanf(cm.Name, "data-%03d", &i); err == nil && cm.Data["n"] == strconv.Itoa(i) {
			found++
		}
	}
	what := fmt.Sprintf("%d/%d objects", found, d.Count)
	if found != d.Count {
		return what, fmt.Errorf("%d of %d ConfigMaps in %s", found, d.Count, d.Namespace)
	}
	return what, nil
}

// Service is a web Deployment on a node behind a Service, and a prober pod
// on a master that fetches the Service twice a second and logs each try:
// it shows whether the Service kept answering while the node's kubelet,
// containerd and kube-proxy were killed.
type Service struct {
	Namespace, Node, Master, Image string
	ip                             string
}

const (
	webName    = "web"
	proberName = "prober"
	webPort    = 8080
	webPage    = "kubeup-drill"
)

// Start creates the Deployment, the Service and the prober, and waits until
// the prober has seen the Service answer.
func (s *Service) Start(ctx context.Context, cs kubernetes.Interface) error {
	labels := map[string]string{"app": webName}
	pin := func(spec *corev1.PodSpec, node string) {
		spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
		spec.Tolerations = []corev1.Toleration{{Key: components.ControlPlaneTaint, Effect: corev1.TaintEffectNoSchedule}}
		spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
	}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: webName},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "web", Image: s.Image,
					Command: []string{"/bin/busybox", "sh", "-c",
						fmt.Sprintf("mkdir -p /tmp/www && echo %s > /tmp/www/index.html && exec /bin/busybox httpd -f -p %d -h /tmp/www", webPage, webPort)},
					Ports:          []corev1.ContainerPort{{ContainerPort: webPort}},
					ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(webPort)}}, PeriodSeconds: 2},
				}}},
			},
		},
	}
	pin(&dep.Spec.Template.Spec, s.Node)
	if _, err := cs.AppsV1().Deployments(s.Namespace).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return err
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: webName},
		Spec:       corev1.ServiceSpec{Selector: labels, Ports: []corev1.ServicePort{{Port: webPort, TargetPort: intstr.FromInt32(webPort)}}},
	}
	created, err := cs.CoreV1().Services(s.Namespace).Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	s.ip = created.Spec.ClusterIP
	// busybox nc, not wget: Debian's static busybox wget segfaults under
	// TCG. Two processes a try (the command substitution's and sleep), one
	// try a second: a fork costs a lot under TCG, and the prober runs on
	// the master the drills measure (five a try, two tries a second, took
	// 9% of its CPU). The kubelet's log timestamps say when.
	script := fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' > /tmp/req
while true; do
  case "$(nc -w 2 %s %d < /tmp/req)" in *%s*) echo ok ;; *) echo FAIL ;; esac
  sleep 1
done`, s.ip, webPort, webPage)
	prober := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: proberName},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "probe", Image: s.Image, Command: []string{"/bin/busybox", "sh", "-c", script},
		}}},
	}
	pin(&prober.Spec, s.Master)
	if _, err := cs.CoreV1().Pods(s.Namespace).Create(ctx, prober, metav1.CreateOptions{}); err != nil {
		return err
	}
	deadline := time.Now().Add(10 * time.Minute)
	for time.Now().Before(deadline) {
		logs, err := cs.CoreV1().Pods(s.Namespace).GetLogs(proberName, &corev1.PodLogOptions{TailLines: ptr.To[int64](5)}).DoRaw(ctx)
		if err == nil && strings.Contains("\n"+string(logs), "\nok\n") {
			return nil
		}
		time.Sleep(3 * time.Second)
	}
	return fmt.Errorf("the prober never reached the %s Service at %s:%d", webName, s.ip, webPort)
}

// Answers counts the prober's tries between from and to: answered and not.
func (s *Service) Answers(ctx context.Context, cs kubernetes.Interface, from, to time.Time) (ok, failed int, err error) {
	// A few tries: the log comes through the prober's kubelet, and one
	// request answered "unknown" failed a whole cert-renewal drill.
	var logs []byte
	for try := 0; ; try++ {
		logs, err = cs.CoreV1().Pods(s.Namespace).GetLogs(proberName, &corev1.PodLogOptions{Timestamps: true}).DoRaw(ctx)
		if err == nil {
			break
		}
		if try == 4 {
			return 0, 0, err
		}
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-time.After(5 * time.Second):
		}
	}
	ok, failed = countAnswers(string(logs), from, to)
	return ok, failed, nil
}

// countAnswers counts the prober's "ok" and "FAIL" lines in [from, to],
// by the timestamp the kubelet put before each (RFC 3339).
func countAnswers(logs string, from, to time.Time) (ok, failed int) {
	for _, l := range strings.Split(logs, "\n") {
		f := strings.Fields(l)
		if len(f) != 2 {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, f[0])
		if err != nil {
			continue
		}
		if t.Before(from.Truncate(time.Second)) || t.After(to) {
			continue
		}
		switch f[1] {
		case "ok":
			ok++
		case "FAIL":
			failed++
		}
	}
	return ok, failed
}
