package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/components/addons"
	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/pki"
)

// tunnelReady bounds the wait for a port forward to listen.
const tunnelReady = 30 * time.Second

// TunnelAgentClient reaches a machine's agent through the API server: a
// port forward (the API server → the machine's kubelet → containerd, which
// dials the port inside the pod's network namespace) to the machine's
// agent-access pod, whose network namespace is the machine's own, so the
// forward lands on the agent's port on the machine's loopback. It is how
// the host reaches agents on a cloud, where only the API's load balancer
// is open to it. The forward lives until ctx is done.
func TunnelAgentClient(ctx context.Context, st *State, m MachineState, b *pki.Bundle) (*agent.Client, error) {
	cfg, err := adminRESTConfig(st, b)
	if err != nil {
		return nil, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	pod, err := agentAccessPod(ctx, cs, m.Name)
	if err != nil {
		return nil, err
	}
	port, err := forward(ctx, cfg, cs, pod, components.AgentPort)
	if err != nil {
		return nil, fmt.Errorf("%s: port forward to %s/%s: %w", m.Name, pod.Namespace, pod.Name, err)
	}
	cert, key, _ := b.Cert("admin")
	c, err := agent.NewClient(fmt.Sprintf("https://127.0.0.1:%d", port), b.CAPEM(pki.KubernetesCA), cert, key)
	if err != nil {
		return nil, err
	}
	c.VerifyName(agent.ServerName)
	return c, nil
}

// adminRESTConfig is the admin's client configuration for st's API
// endpoint, from the cluster's PKI.
func adminRESTConfig(st *State, b *pki.Bundle) (*rest.Config, error) {
	cert, key, ok := b.Cert("admin")
	if !ok {
		return nil, errors.New("the cluster PKI has no admin certificate")
	}
	return &rest.Config{
		Host:            st.APIServerURL(),
		TLSClientConfig: rest.TLSClientConfig{CAData: b.CAPEM(pki.KubernetesCA), CertData: cert, KeyData: key},
		Timeout:         30 * time.Second,
	}, nil
}

// agentAccessPod is the Running agent-access pod on machine.
func agentAccessPod(ctx context.Context, cs kubernetes.Interface, machine string) (*corev1.Pod, error) {
	list, err := cs.CoreV1().Pods(addons.Namespace).List(ctx, metav1.ListOptions{
		LabelSelector: "k8s-app=" + addons.AgentAccessApp,
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", machine).String(),
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list its %s pod: %w", machine, addons.AgentAccessApp, err)
	}
	for i := range list.Items {
		if p := &list.Items[i]; p.Spec.NodeName == machine && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%s: no Running %s pod on it (DaemonSet %s/%s): its agent is reached through one "+
		"(kubectl -n %s get pods -l k8s-app=%s -o wide shows why not)",
		machine, addons.AgentAccessApp, addons.Namespace, addons.AgentAccessApp, addons.Namespace, addons.AgentAccessApp)
}

// forward starts a port forward from a free port on 127.0.0.1 to port in
// pod and returns the local port; the forward stops when ctx is done.
// WebSockets first, SPDY for API servers that do not take them (kubectl's
// order).
func forward(ctx context.Context, cfg *rest.Config, cs kubernetes.Interface, pod *corev1.Pod, port int) (int, error) {
	u := cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(pod.Namespace).Name(pod.Name).SubResource("portforward").URL()
	dialer, err := portForwardDialer(cfg, u)
	if err != nil {
		return 0, err
	}
	ready := make(chan struct{})
	pf, err := portforward.NewOnAddressesWithContext(ctx, dialer, []string{"127.0.0.1"}, []string{fmt.Sprintf("0:%d", port)}, ready, io.Discard, io.Discard)
	if err != nil {
		return 0, err
	}
	done := make(chan error, 1)
	go func() { done <- pf.ForwardPorts() }()
	select {
	case <-ready:
	case err := <-done:
		if err == nil {
			err = errors.New("stopped before it was ready")
		}
		return 0, err
	case <-time.After(tunnelReady):
		return 0, fmt.Errorf("not ready after %s", tunnelReady)
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		return 0, fmt.Errorf("local port: %v", err)
	}
	return int(ports[0].Local), nil
}

// portForwardDialer dials the pod's portforward subresource over
// WebSockets, falling back to SPDY on an upgrade failure.
func portForwardDialer(cfg *rest.Config, u *url.URL) (httpstream.Dialer, error) {
	rt, upgrader, err := spdy.RoundTripperFor(cfg)
	if err != nil {
		return nil, err
	}
	spdyDialer := spdy.NewDialer(upgrader, &http.Client{Transport: rt}, http.MethodPost, u)
	ws, err := portforward.NewSPDYOverWebsocketDialer(u, cfg)
	if err != nil {
		return nil, err
	}
	return portforward.NewFallbackDialer(ws, spdyDialer, func(err error) bool {
		return httpstream.IsUpgradeFailure(err) || httpstream.IsHTTPSProxyError(err)
	}), nil
}
