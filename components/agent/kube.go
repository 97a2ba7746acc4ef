package agent

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// kubeClient is the task that waits for the kubelet's kubeconfig (on nodes
// the kubelet writes it only after TLS bootstrapping), then publishes a
// client for the other tasks and the bearer-token authenticator. The
// kubeconfig names certificate files; client-go reloads those when the
// kubelet rotates them.
type kubeClient struct {
	path  string
	log   *slog.Logger
	sleep func(context.Context, time.Duration) error

	once   sync.Once
	ready  chan struct{}
	client kubernetes.Interface
}

func newKubeClient(path string, log *slog.Logger) *kubeClient {
	return &kubeClient{path: path, log: log, sleep: sleepCtx, ready: make(chan struct{})}
}

// newReadyKubeClient publishes c at once (tests, or a caller with its own client).
func newReadyKubeClient(c kubernetes.Interface) *kubeClient {
	k := &kubeClient{ready: make(chan struct{})}
	k.publish(c)
	return k
}

func (k *kubeClient) publish(c kubernetes.Interface) {
	k.once.Do(func() {
		k.client = c
		close(k.ready)
	})
}

func (k *kubeClient) Name() string { return "kubeconfig" }

// Run waits, backing off from 1 s to 30 s, until the kubeconfig exists,
// then builds the client and returns: the task is done.
func (k *kubeClient) Run(ctx context.Context) error {
	if _, ok := k.Get(); ok {
		return nil
	}
	delay := time.Second
	for waiting := false; ; waiting = true {
		_, err := os.Stat(k.path)
		if err == nil {
			break
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("kubeconfig: %w", err)
		}
		if !waiting {
			k.log.Info("waiting for the kubeconfig (on nodes the kubelet writes it after TLS bootstrapping)", "path", k.path)
		}
		if err := k.sleep(ctx, delay); err != nil {
			return nil
		}
		delay = min(2*delay, 30*time.Second)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", k.path)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", k.path, err)
	}
	cfg.UserAgent = "kubeup-agent"
	c, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return fmt.Errorf("kubeconfig %s: %w", k.path, err)
	}
	k.publish(c)
	k.log.Info("connected to the API server", "kubeconfig", k.path, "host", cfg.Host)
	return nil
}

// Get returns the client if it is ready.
func (k *kubeClient) Get() (kubernetes.Interface, bool) {
	select {
	case <-k.ready:
		return k.client, true
	default:
		return nil, false
	}
}

// Wait blocks until the client is ready or ctx ends.
func (k *kubeClient) Wait(ctx context.Context) (kubernetes.Interface, error) {
	select {
	case <-k.ready:
		return k.client, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
