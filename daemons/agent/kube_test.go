package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	authnv1 "k8s.io/api/authentication/v1"
	authzv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
)

// fakeAPIServer speaks just enough of the Kubernetes API over HTTP for
// restKube: the two reviews, and listing and watching Nodes (including
// the streaming watch-list client-go uses by default: initial ADDED events
// closed by a BOOKMARK marked k8s.io/initial-events-end).
type fakeAPIServer struct {
	mu      sync.Mutex
	nodes   []corev1.Node
	events  chan map[string]any
	reviews []string
	// streamed: a watch asked for the initial events (watch-list).
	streamed bool
}

func (f *fakeAPIServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	writeJSON := func(v any) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(v)
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authentication.k8s.io/v1/tokenreviews":
		var tr authnv1.TokenReview
		json.NewDecoder(r.Body).Decode(&tr)
		f.mu.Lock()
		f.reviews = append(f.reviews, "token "+tr.Spec.Token)
		f.mu.Unlock()
		tr.APIVersion, tr.Kind = "authentication.k8s.io/v1", "TokenReview"
		tr.Status = authnv1.TokenReviewStatus{Authenticated: tr.Spec.Token == "good", User: authnv1.UserInfo{Username: "prometheus"}}
		writeJSON(tr)
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authorization.k8s.io/v1/subjectaccessreviews":
		var sar authzv1.SubjectAccessReview
		json.NewDecoder(r.Body).Decode(&sar)
		f.mu.Lock()
		f.reviews = append(f.reviews, "access "+sar.Spec.User+" "+sar.Spec.NonResourceAttributes.Path)
		f.mu.Unlock()
		sar.APIVersion, sar.Kind = "authorization.k8s.io/v1", "SubjectAccessReview"
		sar.Status.Allowed = true
		writeJSON(sar)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes" && r.URL.Query().Get("watch") != "true":
		f.mu.Lock()
		list := corev1.NodeList{TypeMeta: metav1.TypeMeta{Kind: "NodeList", APIVersion: "v1"},
			ListMeta: metav1.ListMeta{ResourceVersion: "1"}, Items: f.nodes}
		f.mu.Unlock()
		writeJSON(list)
	case r.Method == http.MethodGet && r.URL.Path == "/api/v1/nodes":
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		flush := func() { w.(http.Flusher).Flush() }
		if r.URL.Query().Get("sendInitialEvents") == "true" {
			f.mu.Lock()
			f.streamed = true
			for _, n := range f.nodes {
				enc.Encode(map[string]any{"type": "ADDED", "object": n})
			}
			f.mu.Unlock()
			enc.Encode(map[string]any{"type": "BOOKMARK", "object": map[string]any{"kind": "Node", "apiVersion": "v1",
				"metadata": map[string]any{"resourceVersion": "1", "annotations": map[string]string{"k8s.io/initial-events-end": "true"}}}})
		}
		flush()
		for {
			select {
			case ev := <-f.events:
				enc.Encode(ev)
				flush()
			case <-r.Context().Done():
				return
			}
		}
	default:
		http.Error(w, "not found", http.StatusNotFound)
	}
}

func apiNode(name, podCIDR, ip, rv string) corev1.Node {
	n := *node(name, podCIDR, ip)
	n.APIVersion, n.Kind, n.ResourceVersion = "v1", "Node", rv
	return n
}

// TestRESTKube runs the agent's small client against an HTTP server: the
// reviews, and the pod network driven by the Node informer.
func TestRESTKube(t *testing.T) {
	api := &fakeAPIServer{
		nodes:  []corev1.Node{apiNode("node-0", "", "10.77.0.100", "1"), apiNode("master-0", "10.244.0.0/24", "10.77.0.10", "1")},
		events: make(chan map[string]any, 1),
	}
	srv := httptest.NewServer(api)
	defer srv.Close()
	k, err := newRESTKube(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tr, err := k.CreateTokenReview(ctx, &authnv1.TokenReview{Spec: authnv1.TokenReviewSpec{Token: "good"}})
	if err != nil || !tr.Status.Authenticated || tr.Status.User.Username != "prometheus" {
		t.Fatalf("token review %+v: %v", tr, err)
	}
	sar, err := k.CreateSubjectAccessReview(ctx, &authzv1.SubjectAccessReview{Spec: authzv1.SubjectAccessReviewSpec{
		User: "prometheus", NonResourceAttributes: &authzv1.NonResourceAttributes{Path: "/metrics", Verb: "get"}}})
	if err != nil || !sar.Status.Allowed {
		t.Fatalf("access review %+v: %v", sar, err)
	}

	td := newTestDaemon(t, nil)
	td.podnet.kube = newReadyKubeClient(k)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error)
	go func() { done <- td.podnet.Run(ctx) }()
	waitFor(t, "route to master-0", func() bool { return len(td.podnet.Status().Routes) == 1 })
	api.events <- map[string]any{"type": "MODIFIED", "object": apiNode("node-0", "10.244.1.0/24", "10.77.0.100", "2")}
	waitFor(t, "ready after the watch event", func() bool { return td.podnet.Status().Ready })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	api.mu.Lock()
	defer api.mu.Unlock()
	if !api.streamed {
		t.Error("the informer did not use watch-list (sendInitialEvents)")
	}
}
