package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"kubeup.dev/kubeup/provision/cluster"
)

// readAttempts is how often a read is sent before its failure is the
// caller's: with the waits between (1, 2, 4, 8 s) a read rides out about
// a quarter of an hour of an API server answering 504 after its 60 s
// timeout, or a minute of refused connections.
const readAttempts = 5

// RetryReads makes a's client send a read (GET) again when it failed in a
// way a loaded API server or its network fails for a while: no answer
// (a connection reset, a TLS handshake timeout), 429, or 500/502/503/504
// (the API server's "request did not complete within requested timeout",
// an etcd call past its deadline, a service proxy whose endpoint is not
// ready yet). Under TCG on a busy host one such answer is the normal
// noise of minutes of load, and a check that waits for something should
// wait through it rather than fail on it. Writes are not retried here: a
// write that timed out may have been applied; their callers retry them
// with Retry, which re-reads what it writes.
func RetryReads(a *cluster.Access) error {
	cfg := rest.CopyConfig(a.Config)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return retryReads{rt} })
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	a.Config, a.Clientset = cfg, cs
	return nil
}

type retryReads struct{ next http.RoundTripper }

func (r retryReads) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodGet {
		return r.next.RoundTrip(req)
	}
	wait := time.Second
	for attempt := 1; ; attempt++ {
		resp, err := r.next.RoundTrip(req)
		if attempt == readAttempts || !transient(resp, err) {
			return resp, err
		}
		if resp != nil {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
		}
		select {
		case <-req.Context().Done():
			return nil, req.Context().Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// transient: the answer (or its absence) of a loaded server, not of a
// wrong request. A request whose own context ended is not retried.
func transient(resp *http.Response, err error) bool {
	if err != nil {
		return !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	}
	switch resp.StatusCode {
	case http.StatusTooManyRequests, http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}

// Retry runs f until it succeeds, ctx ends or within has passed, waiting
// 2 s between tries after an error an API server under load gives (see
// Transient); any other error ends it at once. It returns f's last error,
// with how long it tried.
func Retry(ctx context.Context, within time.Duration, f func(context.Context) error) error {
	deadline := time.Now().Add(within)
	for tries := 1; ; tries++ {
		err := f(ctx)
		if err == nil {
			return nil
		}
		if !Transient(err) || time.Now().After(deadline) || ctx.Err() != nil {
			if tries > 1 {
				return fmt.Errorf("%w (%d tries in %s)", err, tries, within)
			}
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(2 * time.Second):
		}
	}
}

// Transient reports whether err is what a loaded API server answers for a
// while (a timeout, too many requests, unavailable, an internal error, a
// conflict with a write that landed meanwhile) or a connection that
// failed, rather than a refusal of the request itself.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		return apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || apierrors.IsTooManyRequests(err) ||
			apierrors.IsServiceUnavailable(err) || apierrors.IsInternalError(err) || apierrors.IsConflict(err) ||
			apierrors.IsUnexpectedServerError(err)
	}
	return !errors.Is(err, context.Canceled) // a transport error
}

// Create runs a create of a named object with Retry for up to 5 minutes:
// a create that timed out may have been done, so "already exists" after
// a retry is its success.
func Create(ctx context.Context, create func(context.Context) error) error {
	tries := 0
	err := Retry(ctx, 5*time.Minute, func(ctx context.Context) error {
		tries++
		return create(ctx)
	})
	if tries > 1 && apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}
