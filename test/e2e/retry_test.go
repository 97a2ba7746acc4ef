package e2e

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A GET answered 504 is sent again until it succeeds; a POST is not; a
// GET answered 404 is not either.
func TestRetryReads(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		switch {
		case r.URL.Path == "/missing":
			w.WriteHeader(http.StatusNotFound)
		case n <= 2:
			w.WriteHeader(http.StatusGatewayTimeout)
		default:
			w.WriteHeader(http.StatusOK)
		}
	}))
	defer srv.Close()
	client := &http.Client{Transport: retryReads{http.DefaultTransport}}
	do := func(method, path string) int {
		req, _ := http.NewRequest(method, srv.URL+path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := do(http.MethodGet, "/"); code != http.StatusOK || calls.Load() != 3 {
		t.Errorf("GET: %d after %d calls, want 200 after 3", code, calls.Load())
	}
	calls.Store(0)
	if code := do(http.MethodPost, "/"); code != http.StatusGatewayTimeout || calls.Load() != 1 {
		t.Errorf("POST: %d after %d calls, want 504 after 1", code, calls.Load())
	}
	calls.Store(10)
	if code := do(http.MethodGet, "/missing"); code != http.StatusNotFound || calls.Load() != 11 {
		t.Errorf("GET of a missing object: %d after %d calls, want 404 after 1", code, calls.Load()-10)
	}
}

func TestRetry(t *testing.T) {
	ctx := context.Background()
	timeout := apierrors.NewTimeoutError("request did not complete within requested timeout", 0)
	n := 0
	if err := Retry(ctx, time.Minute, func(context.Context) error {
		if n++; n < 2 {
			return timeout
		}
		return nil
	}); err != nil || n != 2 {
		t.Errorf("after a timeout: %v, %d tries", err, n)
	}
	n = 0
	forbidden := apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New("no"))
	if err := Retry(ctx, time.Minute, func(context.Context) error { n++; return forbidden }); !apierrors.IsForbidden(err) || n != 1 {
		t.Errorf("a refusal is not retried: %v, %d tries", err, n)
	}
	n = 0
	if err := Retry(ctx, 0, func(context.Context) error { n++; return timeout }); !apierrors.IsTimeout(err) || n != 1 {
		t.Errorf("past its time: %v, %d tries", err, n)
	}
}
