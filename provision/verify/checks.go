package verify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
)

const (
	webApp  = "kubeup-verify-web"
	webPort = 8080
	// page is what every test web server serves.
	page = "kubeup-verify"
)

// permanent marks an error that polling again cannot fix.
type permanent struct{ error }

func (p permanent) Unwrap() error { return p.error }

// poll runs f every second until it returns nil, a permanent error, or ctx
// ends.
func poll(ctx context.Context, f func() error) error {
	var last error
	for {
		if last = f(); last == nil {
			return nil
		}
		var p permanent
		if errors.As(last, &p) {
			return p.error
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v (last: %v)", ctx.Err(), last)
		case <-time.After(time.Second):
		}
	}
}

// create creates an object, trying again while the API server answers
// that it is overloaded (its request timeout, 429, 503) or the connection
// fails: a check proves a behaviour of the cluster, and one request that an
// emulated, saturated master did not answer in time proves nothing. An
// attempt that timed out may still have been stored, so AlreadyExists
// after a retry means created. Any other error ends the check.
func create(ctx context.Context, what string, f func(context.Context) error) error {
	retried := false
	for {
		err := f(ctx)
		switch {
		case err == nil:
			return nil
		case retried && apierrors.IsAlreadyExists(err):
			return nil
		case !overloaded(err):
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("create %s: %w (last: %v)", what, ctx.Err(), err)
		case <-time.After(2 * time.Second):
		}
		retried = true
	}
}

// overloaded reports an error that says the API server did not manage to
// answer, not that the request was wrong.
func overloaded(err error) bool {
	if apierrors.IsServerTimeout(err) || apierrors.IsTimeout(err) || apierrors.IsTooManyRequests(err) || apierrors.IsServiceUnavailable(err) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET)
}

// webServer is a busybox httpd serving page on webPort.
func (r *run) webServer() corev1.Container {
	return corev1.Container{
		Name: "web", Image: r.t.Images.Testbox,
		Command: []string{"/bin/busybox", "sh", "-c",
			"mkdir -p /tmp/www && echo " + page + " > /tmp/www/index.html && exec /bin/busybox httpd -f -p " + fmt.Sprint(webPort) + " -h /tmp/www"},
		Ports:          []corev1.ContainerPort{{ContainerPort: webPort}},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(webPort)}}, PeriodSeconds: 2},
	}
}

// onNode pins a pod to a machine (tolerating the masters' taint).
func onNode(spec *corev1.PodSpec, node string) {
	spec.NodeSelector = map[string]string{"kubernetes.io/hostname": node}
	spec.Tolerations = []corev1.Toleration{{Key: components.ControlPlaneTaint, Effect: corev1.TaintEffectNoSchedule}}
}

func checkDeployment(ctx context.Context, r *run) error {
	labels := map[string]string{"app": webApp}
	dep := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: webApp, Namespace: r.ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{r.webServer()}, TerminationGracePeriodSeconds: ptr.To[int64](1)},
			},
		},
	}
	onNode(&dep.Spec.Template.Spec, r.node.Name)
	if err := create(ctx, "deployment", func(ctx context.Context) error {
		_, err := r.cs.AppsV1().Deployments(r.ns).Create(ctx, dep, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	return poll(ctx, func() error {
		pods, err := r.cs.CoreV1().Pods(r.ns).List(ctx, metav1.ListOptions{LabelSelector: "app=" + webApp})
		if err != nil {
			return err
		}
		var ips, states []string
		for _, p := range pods.Items {
			states = append(states, p.Name+"="+string(p.Status.Phase)+waiting(p))
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" {
				ips = append(ips, p.Status.PodIP)
			}
		}
		if len(ips) != 2 {
			return fmt.Errorf("%d of 2 pods Running: %s", len(ips), strings.Join(states, ", "))
		}
		r.webIPs = ips
		return nil
	})
}

func waiting(p corev1.Pod) string {
	for _, c := range p.Status.ContainerStatuses {
		if w := c.State.Waiting; w != nil {
			return "(" + w.Reason + ")"
		}
	}
	return ""
}

func checkServiceEndpoints(ctx context.Context, r *run) error {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: webApp, Namespace: r.ns},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": webApp},
			Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromInt32(webPort)}}},
	}
	if err := create(ctx, "service", func(ctx context.Context) error {
		_, err := r.cs.CoreV1().Services(r.ns).Create(ctx, svc, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := poll(ctx, func() error {
		created, err := r.cs.CoreV1().Services(r.ns).Get(ctx, webApp, metav1.GetOptions{})
		if err == nil {
			r.svcIP = created.Spec.ClusterIP
		}
		return err
	}); err != nil {
		return err
	}
	return poll(ctx, func() error {
		slices, err := r.cs.DiscoveryV1().EndpointSlices(r.ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + webApp})
		if err != nil {
			return err
		}
		ready := 0
		for _, s := range slices.Items {
			for _, e := range s.Endpoints {
				if e.Conditions.Ready != nil && *e.Conditions.Ready {
					ready++
				}
			}
		}
		if ready != 2 {
			return fmt.Errorf("%d of 2 endpoints ready", ready)
		}
		return nil
	})
}

// checkServiceAccount: the service-account controller creates "default" in
// a new namespace, the token controller issues it tokens, and a token
// authenticates as that account.
func checkServiceAccount(ctx context.Context, r *run) error {
	if err := poll(ctx, func() error {
		_, err := r.cs.CoreV1().ServiceAccounts(r.ns).Get(ctx, "default", metav1.GetOptions{})
		return err
	}); err != nil {
		return err
	}
	tr, err := r.cs.CoreV1().ServiceAccounts(r.ns).CreateToken(ctx, "default",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](600)}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("request a token: %w", err)
	}
	cfg := rest.AnonymousClientConfig(r.cfg)
	cfg.BearerToken = tr.Status.Token
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	review, err := sa.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("authenticate with the token: %w", err)
	}
	if want := "system:serviceaccount:" + r.ns + ":default"; review.Status.UserInfo.Username != want {
		return fmt.Errorf("the token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
	return nil
}

// runToCompletion runs a one-shot pod and waits for it to succeed; a failed
// pod's logs (or its state) go into the error.
func (r *run) runToCompletion(ctx context.Context, pod *corev1.Pod) error {
	pod.Namespace = r.ns
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	pod.Spec.TerminationGracePeriodSeconds = ptr.To[int64](1)
	if err := create(ctx, "pod "+pod.Name, func(ctx context.Context) error {
		_, err := r.cs.CoreV1().Pods(r.ns).Create(ctx, pod, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	return poll(ctx, func() error {
		p, err := r.cs.CoreV1().Pods(r.ns).Get(ctx, pod.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		switch p.Status.Phase {
		case corev1.PodSucceeded:
			return nil
		case corev1.PodFailed:
			logs, _ := r.cs.CoreV1().Pods(r.ns).GetLogs(pod.Name, &corev1.PodLogOptions{}).DoRaw(ctx)
			return permanent{fmt.Errorf("pod %s failed: %s", pod.Name, strings.TrimSpace(string(logs)))}
		}
		return fmt.Errorf("pod %s is %s%s", pod.Name, p.Status.Phase, waiting(*p))
	})
}

// fetch is a pod on machine that fetches http://host:port/ and checks the
// page. It speaks HTTP through busybox nc: Debian's static busybox wget
// crashes (SIGSEGV) under QEMU's TCG, whatever the outcome of the request.
func (r *run) fetch(name, machine, host string, port int) *corev1.Pod {
	script := fmt.Sprintf(`for i in 1 2 3 4 5 6 7 8 9 10; do
  out=$(printf 'GET / HTTP/1.0\r\nHost: %[1]s\r\n\r\n' | /bin/busybox nc -w 5 %[1]s %[2]d)
  case "$out" in *%[3]s*) echo "fetched %[1]s:%[2]d"; exit 0;; esac
  sleep 2
done
echo "fetch %[1]s:%[2]d failed: $out"; exit 1`, host, port, page)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "fetch", Image: r.t.Images.Testbox,
			Command: []string{"/bin/busybox", "sh", "-c", script},
		}}},
	}
	onNode(&p.Spec, machine)
	return p
}

func checkPodToPod(ctx context.Context, r *run) error {
	server := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "server-on-master", Namespace: r.ns},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{r.webServer()}, TerminationGracePeriodSeconds: ptr.To[int64](1)},
	}
	onNode(&server.Spec, r.master.Name)
	if err := create(ctx, "pod "+server.Name, func(ctx context.Context) error {
		_, err := r.cs.CoreV1().Pods(r.ns).Create(ctx, server, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := poll(ctx, func() error {
		p, err := r.cs.CoreV1().Pods(r.ns).Get(ctx, server.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				r.mastIP = p.Status.PodIP
				return nil
			}
		}
		return fmt.Errorf("server pod on %s is %s%s", r.master.Name, p.Status.Phase, waiting(*p))
	}); err != nil {
		return err
	}
	return r.runToCompletion(ctx, r.fetch("fetch-pod-ip", r.node.Name, r.mastIP, webPort))
}

func checkClusterIP(ctx context.Context, r *run) error {
	if r.svcIP == "" {
		return errors.New("no Service (an earlier check failed)")
	}
	return r.runToCompletion(ctx, r.fetch("fetch-cluster-ip", r.node.Name, r.svcIP, 80))
}

func checkVolumes(ctx context.Context, r *run) error {
	if err := create(ctx, "secret", func(ctx context.Context) error {
		_, err := r.cs.CoreV1().Secrets(r.ns).Create(ctx, &corev1.Secret{
			ObjectMeta: metav1.ObjectMeta{Name: "verify-secret"}, StringData: map[string]string{"password": "s3cret-value"},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	if err := create(ctx, "configmap", func(ctx context.Context) error {
		_, err := r.cs.CoreV1().ConfigMaps(r.ns).Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "verify-config"}, Data: map[string]string{"greeting": "hello-kubeup"},
		}, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "volumes"},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "read", Image: r.t.Images.Testbox,
				Command: []string{"/bin/busybox", "sh", "-c",
					`test "$(cat /secret/password)" = s3cret-value && test "$(cat /config/greeting)" = hello-kubeup && echo volumes-ok || { echo "secret=$(cat /secret/password) config=$(cat /config/greeting)"; exit 1; }`},
				VolumeMounts: []corev1.VolumeMount{{Name: "s", MountPath: "/secret"}, {Name: "c", MountPath: "/config"}},
			}},
			Volumes: []corev1.Volume{
				{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "verify-secret"}}},
				{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "verify-config"}}}},
			},
		},
	}
	onNode(&p.Spec, r.node.Name)
	return r.runToCompletion(ctx, p)
}

// checkLiveness: a container whose liveness file disappears is restarted.
func checkLiveness(ctx context.Context, r *run) error {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "liveness", Namespace: r.ns},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: ptr.To[int64](1),
			Containers: []corev1.Container{{
				Name: "app", Image: r.t.Images.Testbox,
				Command: []string{"/bin/busybox", "sh", "-c", "touch /tmp/healthy; sleep 10; rm -f /tmp/healthy; sleep 600"},
				LivenessProbe: &corev1.Probe{
					ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/busybox", "cat", "/tmp/healthy"}}},
					PeriodSeconds:    2,
					FailureThreshold: 1,
				},
			}},
		},
	}
	onNode(&p.Spec, r.node.Name)
	if err := create(ctx, "pod "+p.Name, func(ctx context.Context) error {
		_, err := r.cs.CoreV1().Pods(r.ns).Create(ctx, p, metav1.CreateOptions{})
		return err
	}); err != nil {
		return err
	}
	// Once seen (or not), the pod goes: its probe execs in the container
	// every 2 s and it restarts every few seconds after its first failure,
	// work on the node (a runc exec each, seconds under TCG) that would go
	// on through every later check until the namespace is deleted.
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		defer cancel()
		_ = r.cs.CoreV1().Pods(r.ns).Delete(dctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
	}()
	return poll(ctx, func() error {
		got, err := r.cs.CoreV1().Pods(r.ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for _, c := range got.Status.ContainerStatuses {
			if c.RestartCount >= 1 {
				return nil
			}
		}
		return fmt.Errorf("not restarted yet (%s%s)", got.Status.Phase, waiting(*got))
	})
}

// checkStaticPod puts a pod into a node's manifest directory through the
// agent and waits for the kubelet to post its mirror pod.
func checkStaticPod(ctx context.Context, r *run) error {
	const name = "kubeup-verify-static"
	pod := corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{"app": name}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "sleep", Image: r.t.Images.Testbox, Command: []string{"/bin/busybox", "sleep", "3600"},
		}}, TerminationGracePeriodSeconds: ptr.To[int64](1)},
	}
	data, err := yaml.Marshal(pod)
	if err != nil {
		return err
	}
	c := r.agents[r.node.Name]
	if err := c.PutManifest(ctx, name, data); err != nil {
		return err
	}
	r.cleanup = append(r.cleanup, func(ctx context.Context) { _ = c.DeleteManifest(ctx, name) })
	mirror := name + "-" + r.node.Name
	if err := poll(ctx, func() error {
		p, err := r.cs.CoreV1().Pods("default").Get(ctx, mirror, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if _, ok := p.Annotations["kubernetes.io/config.mirror"]; !ok {
			return fmt.Errorf("pod %s is not a mirror pod", mirror)
		}
		if p.Status.Phase != corev1.PodRunning {
			return fmt.Errorf("mirror pod %s is %s", mirror, p.Status.Phase)
		}
		return nil
	}); err != nil {
		return err
	}
	// Removing the manifest removes the pod: the kubelet owns it.
	if err := c.DeleteManifest(ctx, name); err != nil {
		return err
	}
	return poll(ctx, func() error {
		_, err := r.cs.CoreV1().Pods("default").Get(ctx, mirror, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("mirror pod %s still there (%v)", mirror, err)
	})
}

// checkLogs reads a pod's log through the API server, which reaches the
// node's kubelet over TLS with a serving certificate the addon manager
// approved.
func checkLogs(ctx context.Context, r *run) error {
	return poll(ctx, func() error {
		stream, err := r.cs.CoreV1().Pods(r.ns).GetLogs("volumes", &corev1.PodLogOptions{}).Stream(ctx)
		if err != nil {
			return err
		}
		defer stream.Close()
		out, err := io.ReadAll(stream)
		if err != nil {
			return err
		}
		if !strings.Contains(string(out), "volumes-ok") {
			return fmt.Errorf("log %q lacks volumes-ok", out)
		}
		return nil
	})
}

// checkDNS resolves the API server's Service and the test Service by name
// from a pod, through the cluster DNS the kubelet points pods at.
func checkDNS(ctx context.Context, r *run) error {
	if _, err := r.cs.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return errSkip{"the DNS addon is off"}
	}
	names := []string{"kubernetes.default.svc." + r.domain(), webApp + "." + r.ns + ".svc." + r.domain()}
	script := ""
	for _, n := range names {
		script += fmt.Sprintf("ok=; for i in 1 2 3 4 5 6 7 8 9 10; do /bin/busybox nslookup %[1]s && ok=1 && break; sleep 3; done; [ -n \"$ok\" ] || { echo 'cannot resolve %[1]s'; exit 1; }\n", n)
	}
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "dns"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{
			Name: "lookup", Image: r.t.Images.Testbox, Command: []string{"/bin/busybox", "sh", "-c", script},
		}}},
	}
	onNode(&p.Spec, r.node.Name)
	return r.runToCompletion(ctx, p)
}

// domain is the cluster DNS domain, read back from the API server's
// service-account issuer (https://kubernetes.default.svc.<domain>).
func (r *run) domain() string {
	if r.dnsDomain != "" {
		return r.dnsDomain
	}
	r.dnsDomain = "cluster.local"
	body, err := r.cs.Discovery().RESTClient().Get().AbsPath("/.well-known/openid-configuration").DoRaw(context.Background())
	if err == nil {
		var doc struct {
			Issuer string `json:"issuer"`
		}
		if json.Unmarshal(body, &doc) == nil {
			if d, ok := strings.CutPrefix(doc.Issuer, "https://kubernetes.default.svc."); ok && d != "" {
				r.dnsDomain = d
			}
		}
	}
	return r.dnsDomain
}

// checkUI reads the UI's overview through the API server's service proxy,
// sees a write refused, and sees its ServiceAccount denied any change.
func checkUI(ctx context.Context, r *run) error {
	if _, err := r.cs.CoreV1().Services("kube-system").Get(ctx, "kubeup-ui", metav1.GetOptions{}); apierrors.IsNotFound(err) {
		return errSkip{"the UI addon is off"}
	}
	var overview struct {
		Nodes []struct {
			Name string `json:"name"`
		} `json:"nodes"`
	}
	if err := poll(ctx, func() error {
		body, err := r.cs.CoreV1().Services("kube-system").ProxyGet("http", "kubeup-ui", "http", "/api/overview", nil).DoRaw(ctx)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(body, &overview); err != nil {
			return fmt.Errorf("overview %q: %w", body, err)
		}
		// The Nodes the API has now: a machine of the cluster's state may
		// be powered off and its Node deleted (a metal machine retired).
		nodes, err := r.cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		var want, got []string
		for _, n := range nodes.Items {
			want = append(want, n.Name)
		}
		for _, n := range overview.Nodes {
			got = append(got, n.Name)
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("the overview shows nodes %v, the API has %v", got, want)
		}
		return nil
	}); err != nil {
		return err
	}
	err := r.cs.CoreV1().RESTClient().Post().AbsPath("/api/v1/namespaces/kube-system/services/kubeup-ui:http/proxy/").Body([]byte("x")).Do(ctx).Error()
	if !apierrors.IsMethodNotSupported(err) && !strings.Contains(fmt.Sprint(err), "405") && !strings.Contains(fmt.Sprint(err), "Method Not Allowed") {
		return fmt.Errorf("a POST to the UI answered %v, want 405 Method Not Allowed", err)
	}
	for _, verb := range []string{"create", "delete", "update", "patch"} {
		sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
			User:               "system:serviceaccount:kube-system:kubeup-ui",
			Groups:             []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"},
			ResourceAttributes: &authorizationv1.ResourceAttributes{Verb: verb, Resource: "pods", Namespace: "default"},
		}}
		res, err := r.cs.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
		if err != nil {
			return err
		}
		if res.Status.Allowed {
			return fmt.Errorf("the UI's ServiceAccount may %s pods", verb)
		}
	}
	return nil
}
