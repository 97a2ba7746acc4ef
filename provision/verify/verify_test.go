package verify

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/klog/v2"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/provision/cluster"
)

func TestPollRetriesUntilSuccess(t *testing.T) {
	t.Parallel()
	calls := 0
	err := poll(context.Background(), func() error {
		calls++
		if calls < 2 {
			return errors.New("not yet")
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Errorf("poll = %v after %d calls, want nil after 2", err, calls)
	}
}

// A permanent error stops polling at once and is returned unwrapped.
func TestPollStopsOnPermanent(t *testing.T) {
	t.Parallel()
	cause := errors.New("pod failed")
	for _, perm := range []error{permanent{cause}, errors.Join(errors.New("context"), permanent{cause})} {
		calls := 0
		start := time.Now()
		err := poll(context.Background(), func() error { calls++; return perm })
		if err != cause {
			t.Errorf("poll(%v) = %#v, want the cause %v itself", perm, err, cause)
		}
		if calls != 1 || time.Since(start) > 900*time.Millisecond {
			t.Errorf("poll(%v) called f %d times in %s, want once at once", perm, calls, time.Since(start))
		}
	}
}

// When the context ends the error says why and what the last try said.
func TestPollContextEnds(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	calls := 0
	start := time.Now()
	err := poll(ctx, func() error { calls++; return errors.New("1 of 2 ready") })
	if err == nil {
		t.Fatal("poll returned nil")
	}
	if want := "context deadline exceeded (last: 1 of 2 ready)"; err.Error() != want {
		t.Errorf("poll = %q, want %q", err, want)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("poll returned %s after the context ended at 100ms", d)
	}
	if calls != 1 {
		t.Errorf("f called %d times", calls)
	}

	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if err := poll(cctx, func() error { return errors.New("refused") }); err == nil || err.Error() != "context canceled (last: refused)" {
		t.Errorf("canceled: %v", err)
	}
}

func TestWaiting(t *testing.T) {
	t.Parallel()
	waitingIn := func(reason string) corev1.ContainerStatus {
		return corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason}}}
	}
	running := corev1.ContainerStatus{State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}
	terminated := corev1.ContainerStatus{State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{Reason: "Completed"}}}
	cases := []struct {
		name     string
		statuses []corev1.ContainerStatus
		want     string
	}{
		{"no status yet", nil, ""},
		{"running", []corev1.ContainerStatus{running}, ""},
		{"terminated", []corev1.ContainerStatus{terminated}, ""},
		{"pulling", []corev1.ContainerStatus{waitingIn("ImagePullBackOff")}, "(ImagePullBackOff)"},
		{"second container waits", []corev1.ContainerStatus{running, waitingIn("CrashLoopBackOff")}, "(CrashLoopBackOff)"},
		{"first waiting one", []corev1.ContainerStatus{waitingIn("ContainerCreating"), waitingIn("ErrImagePull")}, "(ContainerCreating)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			p := corev1.Pod{Status: corev1.PodStatus{ContainerStatuses: c.statuses}}
			if got := waiting(p); got != c.want {
				t.Errorf("waiting = %q, want %q", got, c.want)
			}
		})
	}
}

// onNode pins a pod to one machine and lets it run on a tainted master.
func TestOnNode(t *testing.T) {
	t.Parallel()
	spec := corev1.PodSpec{
		NodeSelector: map[string]string{"disk": "ssd"},
		Tolerations:  []corev1.Toleration{{Key: "other", Effect: corev1.TaintEffectNoExecute}},
	}
	onNode(&spec, "master-0")
	if want := map[string]string{"kubernetes.io/hostname": "master-0"}; !reflect.DeepEqual(spec.NodeSelector, want) {
		t.Errorf("node selector %v, want %v", spec.NodeSelector, want)
	}
	taint := corev1.Taint{Key: components.ControlPlaneTaint, Effect: corev1.TaintEffectNoSchedule}
	if len(spec.Tolerations) != 1 || !spec.Tolerations[0].ToleratesTaint(klog.Background(), &taint, false) {
		t.Errorf("tolerations %+v do not tolerate %v alone", spec.Tolerations, taint)
	}
	other := corev1.Taint{Key: "node.kubernetes.io/unschedulable", Effect: corev1.TaintEffectNoSchedule}
	if spec.Tolerations[0].ToleratesTaint(klog.Background(), &other, false) {
		t.Errorf("tolerations %+v tolerate every NoSchedule taint", spec.Tolerations)
	}
}

func checkNames() []string {
	var out []string
	for _, c := range checks() {
		out = append(out, c.name)
	}
	return out
}

func TestChecksNamesAndOrder(t *testing.T) {
	t.Parallel()
	names := checkNames()
	seen := map[string]bool{}
	for i, c := range checks() {
		if strings.TrimSpace(c.name) == "" {
			t.Errorf("check %d has no name", i)
		}
		if seen[c.name] {
			t.Errorf("check %q twice", c.name)
		}
		seen[c.name] = true
		if c.run == nil {
			t.Errorf("check %q has no run", c.name)
		}
	}
	if len(names) < 2 {
		t.Fatalf("checks %q", names)
	}
	if first, want := names[0], "a Deployment of 2 replicas gets 2 Running pods"; first != want {
		t.Errorf("first check %q, want %q", first, want)
	}
	if last, want := names[len(names)-1], "the UI shows the overview, refuses a write, and its account cannot change anything"; last != want {
		t.Errorf("last check %q, want %q", last, want)
	}
	// Checks leave facts for later ones: each of these must run after the
	// one it depends on.
	index := func(prefix string) int {
		i := slices.IndexFunc(names, func(n string) bool { return strings.HasPrefix(n, prefix) })
		if i < 0 {
			t.Fatalf("no check %q... in %q", prefix, names)
		}
		return i
	}
	for _, dep := range []struct{ before, after, why string }{
		{"a Deployment", "a Service gets endpoints", "the Service selects the Deployment's pods"},
		{"a Service gets endpoints", "a pod reaches a Service's ClusterIP", "run.svcIP"},
		{"a pod mounts a Secret", "the API server streams a pod's logs", "the logs read are the volumes pod's"},
		{"a Service gets endpoints", "a pod resolves", "the lookup names the test Service"},
	} {
		if index(dep.before) >= index(dep.after) {
			t.Errorf("%q... runs after %q... (%s)", dep.before, dep.after, dep.why)
		}
	}
}

func webPod(name, phase, ip string, labels map[string]string, statuses ...corev1.ContainerStatus) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "t", Labels: labels},
		Status:     corev1.PodStatus{Phase: corev1.PodPhase(phase), PodIP: ip, ContainerStatuses: statuses},
	}
}

func testRun() (*run, *fake.Clientset) {
	cs := fake.NewClientset()
	return &run{
		t:    Target{Images: components.Images{Testbox: "testbox:1"}},
		cs:   cs,
		ns:   "t",
		node: cluster.MachineState{Name: "node-0"},
	}, cs
}

// checkDeployment creates a Deployment of 2 replicas pinned to the node and
// waits until both pods run, keeping their IPs for later checks.
func TestCheckDeployment(t *testing.T) {
	t.Parallel()
	r, cs := testRun()
	web := map[string]string{"app": webApp}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// The "scheduler": once the Deployment exists, one pod starts, then the
	// other; a pod of another app runs all along.
	if _, err := cs.CoreV1().Pods("t").Create(ctx, webPod("other", "Running", "10.244.1.9", map[string]string{"app": "other"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			for {
				if _, err := cs.AppsV1().Deployments("t").Get(ctx, webApp, metav1.GetOptions{}); err == nil {
					break
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
			if _, err := cs.CoreV1().Pods("t").Create(ctx, webPod("web-a", "Running", "10.244.1.2", web), metav1.CreateOptions{}); err != nil {
				return err
			}
			time.Sleep(300 * time.Millisecond)
			_, err := cs.CoreV1().Pods("t").Create(ctx, webPod("web-b", "Running", "10.244.1.3", web), metav1.CreateOptions{})
			return err
		}()
	}()

	if err := checkDeployment(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ips := slices.Sorted(slices.Values(r.webIPs))
	if want := []string{"10.244.1.2", "10.244.1.3"}; !reflect.DeepEqual(ips, want) {
		t.Errorf("webIPs %v, want %v", r.webIPs, want)
	}

	dep, err := cs.AppsV1().Deployments("t").Get(ctx, webApp, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if dep.Spec.Replicas == nil || *dep.Spec.Replicas != 2 {
		t.Errorf("replicas %v, want 2", dep.Spec.Replicas)
	}
	if !reflect.DeepEqual(dep.Spec.Selector.MatchLabels, web) || !reflect.DeepEqual(dep.Spec.Template.Labels, web) {
		t.Errorf("selector %v, template labels %v, want both %v", dep.Spec.Selector.MatchLabels, dep.Spec.Template.Labels, web)
	}
	spec := dep.Spec.Template.Spec
	if got := spec.NodeSelector["kubernetes.io/hostname"]; got != "node-0" {
		t.Errorf("pods pinned to %q, want node-0", got)
	}
	if len(spec.Tolerations) != 1 || spec.Tolerations[0].Key != components.ControlPlaneTaint {
		t.Errorf("tolerations %+v", spec.Tolerations)
	}
	if len(spec.Containers) != 1 || spec.Containers[0].Image != "testbox:1" ||
		len(spec.Containers[0].Ports) != 1 || spec.Containers[0].Ports[0].ContainerPort != webPort {
		t.Errorf("containers %+v", spec.Containers)
	}
}

// Until both pods run (with an IP) the check keeps waiting, and its error
// says how many did.
func TestCheckDeploymentTimesOut(t *testing.T) {
	t.Parallel()
	r, cs := testRun()
	web := map[string]string{"app": webApp}
	bg := context.Background()
	creating := corev1.ContainerStatus{State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ContainerCreating"}}}
	for _, p := range []*corev1.Pod{
		webPod("web-a", "Running", "10.244.1.2", web),
		webPod("web-b", "Pending", "", web, creating),
		webPod("web-c", "Running", "", web), // no IP yet
		webPod("other", "Running", "10.244.1.9", map[string]string{"app": "other"}),
	} {
		if _, err := cs.CoreV1().Pods("t").Create(bg, p, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(bg, 1500*time.Millisecond)
	defer cancel()
	err := checkDeployment(ctx, r)
	if err == nil {
		t.Fatal("the check passed with one pod Running")
	}
	for _, want := range []string{"context deadline exceeded", "1 of 2 pods Running", "web-b=Pending(ContainerCreating)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "other=") {
		t.Errorf("error %q counts a pod of another app", err)
	}
	if r.webIPs != nil {
		t.Errorf("webIPs %v after a failure", r.webIPs)
	}
}

// A Deployment that cannot be created fails the check at once, without
// polling for pods.
func TestCheckDeploymentCreateFails(t *testing.T) {
	t.Parallel()
	r, cs := testRun()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	existing := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: webApp, Namespace: "t"}}
	if _, err := cs.AppsV1().Deployments("t").Create(ctx, existing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	// Had it polled, no pods would come and ctx would end it instead.
	if err := checkDeployment(ctx, r); !apierrors.IsAlreadyExists(err) {
		t.Errorf("error %v, want AlreadyExists", err)
	}
}

// An overloaded API server's answers are tried again; a timed-out attempt
// that was stored anyway counts as created; a wrong request is not retried.
func TestCreateRetriesOverload(t *testing.T) {
	t.Parallel()
	gr := corev1.Resource("pods")
	timeout := apierrors.NewServerTimeout(gr, "create", 0)
	cs := fake.NewClientset()
	pods := cs.CoreV1().Pods("t")
	calls := 0
	err := create(context.Background(), "pod", func(ctx context.Context) error {
		calls++
		if calls == 1 {
			// Stored, but the client was told it timed out.
			if _, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			return timeout
		}
		_, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, metav1.CreateOptions{})
		return err
	})
	if err != nil || calls != 2 {
		t.Errorf("create = %v after %d calls, want nil after 2", err, calls)
	}

	// AlreadyExists on the first try is the caller's business.
	calls = 0
	err = create(context.Background(), "pod", func(ctx context.Context) error {
		calls++
		_, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}, metav1.CreateOptions{})
		return err
	})
	if !apierrors.IsAlreadyExists(err) || calls != 1 {
		t.Errorf("create of an existing pod = %v after %d calls, want AlreadyExists at once", err, calls)
	}
	invalid := apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Pod").GroupKind(), "p", nil)
	calls = 0
	if err := create(context.Background(), "pod", func(context.Context) error { calls++; return invalid }); err != invalid || calls != 1 {
		t.Errorf("create of an invalid pod = %v after %d calls, want it at once", err, calls)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := create(ctx, "pod", func(context.Context) error { return timeout }); err == nil || !strings.Contains(err.Error(), "create pod") {
		t.Errorf("create while the server stays overloaded = %v, want the context's end", err)
	}
}

// checkLiveness passes once the pod's container restarted, and deletes the
// pod then, so that its probe and restarts stop loading the node during the
// later checks.
func TestCheckLivenessDeletesItsPod(t *testing.T) {
	t.Parallel()
	r, cs := testRun()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- func() error {
			for {
				p, err := cs.CoreV1().Pods("t").Get(ctx, "liveness", metav1.GetOptions{})
				if err == nil {
					if p.Spec.Containers[0].LivenessProbe == nil || p.Spec.NodeSelector["kubernetes.io/hostname"] != "node-0" {
						return fmt.Errorf("pod %+v", p.Spec)
					}
					p.Status.Phase = corev1.PodRunning
					p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "app", RestartCount: 1}}
					_, err = cs.CoreV1().Pods("t").UpdateStatus(ctx, p, metav1.UpdateOptions{})
					return err
				}
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
		}()
	}()
	if err := checkLiveness(ctx, r); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Pods("t").Get(ctx, "liveness", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the liveness pod is still there after the check: %v", err)
	}
}
