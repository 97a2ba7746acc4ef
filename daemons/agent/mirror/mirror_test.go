package mirror

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	digest "github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// fakeStore is a map-based Store that counts reads.
type fakeStore struct {
	images map[string]ocispec.Descriptor
	blobs  map[digest.Digest][]byte
	err    error // returned by every call when set

	mu    sync.Mutex
	reads []int // the length of every ReadAt
}

func newFakeStore() *fakeStore {
	return &fakeStore{images: map[string]ocispec.Descriptor{}, blobs: map[digest.Digest][]byte{}}
}

// add stores b and returns its descriptor.
func (f *fakeStore) add(mediaType string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	f.blobs[d] = b
	return ocispec.Descriptor{MediaType: mediaType, Digest: d, Size: int64(len(b))}
}

func (f *fakeStore) Resolve(_ context.Context, name string) (ocispec.Descriptor, error) {
	if f.err != nil {
		return ocispec.Descriptor{}, f.err
	}
	d, ok := f.images[name]
	if !ok {
		return d, fmt.Errorf("image %q: %w", name, errdefs.ErrNotFound)
	}
	return d, nil
}

func (f *fakeStore) Info(_ context.Context, dgst digest.Digest) (content.Info, error) {
	if f.err != nil {
		return content.Info{}, f.err
	}
	b, ok := f.blobs[dgst]
	if !ok {
		return content.Info{}, fmt.Errorf("content %s: %w", dgst, errdefs.ErrNotFound)
	}
	return content.Info{Digest: dgst, Size: int64(len(b))}, nil
}

func (f *fakeStore) ReaderAt(_ context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	b, ok := f.blobs[desc.Digest]
	if !ok {
		return nil, fmt.Errorf("content %s: %w", desc.Digest, errdefs.ErrNotFound)
	}
	return &fakeReaderAt{Reader: bytes.NewReader(b), f: f}, nil
}

type fakeReaderAt struct {
	*bytes.Reader
	f *fakeStore
}

func (r *fakeReaderAt) ReadAt(p []byte, off int64) (int, error) {
	r.f.mu.Lock()
	r.f.reads = append(r.f.reads, len(p))
	r.f.mu.Unlock()
	return r.Reader.ReadAt(p, off)
}

func (r *fakeReaderAt) Close() error { return nil }

const (
	dockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	dockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
)

// fixture is a store holding one image, registry.k8s.io/kubeup/app:1: an
// OCI index (with its mediaType) over an OCI manifest, a config and a layer.
type fixture struct {
	store                   *fakeStore
	index, manifest, config ocispec.Descriptor
	layer                   ocispec.Descriptor
	srv                     *httptest.Server
	log                     *bytes.Buffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{store: newFakeStore(), log: &bytes.Buffer{}}
	layer := bytes.Repeat([]byte("layer data "), 300_000) // 3.3 MB: several read chunks
	f.layer = f.store.add(ocispec.MediaTypeImageLayerGzip, layer)
	f.config = f.store.add(ocispec.MediaTypeImageConfig, []byte(`{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}`))
	f.manifest = f.store.add(ocispec.MediaTypeImageManifest, mustJSON(t, ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: f.config, Layers: []ocispec.Descriptor{f.layer},
	}))
	f.index = f.store.add(ocispec.MediaTypeImageIndex, mustJSON(t, ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{f.manifest},
	}))
	f.store.images["registry.k8s.io/kubeup/app:1"] = f.index
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, f.log}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.srv = httptest.NewServer(Handler(f.store, log))
	t.Cleanup(f.srv.Close)
	return f
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// do sends a request to the handler with a raw (uncleaned) path.
func (f *fixture) do(t *testing.T, method, path string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := f.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestPing(t *testing.T) {
	f := newFixture(t)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		resp, body := f.do(t, m, "/v2/")
		want := "{}"
		if m == http.MethodHead {
			want = ""
		}
		if resp.StatusCode != 200 || string(body) != want || resp.Header.Get("Docker-Distribution-API-Version") != "registry/2.0" {
			t.Errorf("%s /v2/: %s %q %v", m, resp.Status, body, resp.Header)
		}
	}
}

// checkServed asserts a 200 with the registry headers and, for GET, body.
func checkServed(t *testing.T, resp *http.Response, body []byte, method, mediaType string, want []byte) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s %s", method, resp.Status, body)
	}
	if got := resp.Header.Get("Content-Type"); got != mediaType {
		t.Errorf("%s: Content-Type %q, want %q", method, got, mediaType)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != digest.FromBytes(want).String() {
		t.Errorf("%s: Docker-Content-Digest %q, want %s", method, got, digest.FromBytes(want))
	}
	if got := resp.Header.Get("Content-Length"); got != strconv.Itoa(len(want)) {
		t.Errorf("%s: Content-Length %q, want %d", method, got, len(want))
	}
	if method == http.MethodHead {
		want = nil
	}
	if !bytes.Equal(body, want) {
		t.Errorf("%s: body of %d bytes differs from the blob's %d", method, len(body), len(want))
	}
}

func TestManifestByTag(t *testing.T) {
	f := newFixture(t)
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		resp, body := f.do(t, m, "/v2/kubeup/app/manifests/1?ns=registry.k8s.io")
		checkServed(t, resp, body, m, ocispec.MediaTypeImageIndex, f.store.blobs[f.index.Digest])
	}
}

func TestManifestByDigestDetectsMediaType(t *testing.T) {
	f := newFixture(t)
	list := f.store.add("", []byte(`{"schemaVersion":2,"mediaType":"`+dockerManifestList+`","manifests":[]}`))
	schema2 := f.store.add("", []byte(`{"schemaVersion":2,"mediaType":"`+dockerManifest+`","config":{},"layers":[]}`))
	ociIndex := f.store.add("", []byte(`{"schemaVersion":2,"manifests":[{"mediaType":"x","digest":"sha256:00","size":1}]}`))
	ociManifest := f.store.add("", []byte(`{"schemaVersion":2,"config":{"mediaType":"x"},"layers":[]}`))
	for _, tc := range []struct {
		name string
		desc ocispec.Descriptor
		want string
	}{
		{"docker manifest list", list, dockerManifestList},
		{"docker schema2 manifest", schema2, dockerManifest},
		{"OCI index without mediaType", ociIndex, ocispec.MediaTypeImageIndex},
		{"OCI manifest without mediaType", ociManifest, ocispec.MediaTypeImageManifest},
		{"OCI index with mediaType", f.index, ocispec.MediaTypeImageIndex},
		{"OCI manifest with mediaType", f.manifest, ocispec.MediaTypeImageManifest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, m := range []string{http.MethodGet, http.MethodHead} {
				// Any repository of the registry: digests are global.
				resp, body := f.do(t, m, "/v2/other/repo/manifests/"+tc.desc.Digest.String()+"?ns=registry.k8s.io")
				checkServed(t, resp, body, m, tc.want, f.store.blobs[tc.desc.Digest])
			}
		})
	}
}

func TestManifestNotServed(t *testing.T) {
	f := newFixture(t)
	big := f.store.add("", []byte(`{"schemaVersion":2,"manifests":[],"x":"`+strings.Repeat("a", maxManifestSize)+`"}`))
	// A tag whose manifest is gone from the content store.
	f.store.images["registry.k8s.io/kubeup/gone:1"] = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("gone"), Size: 4}
	for _, tc := range []struct{ name, path string }{
		{"unknown tag", "/v2/kubeup/app/manifests/2?ns=registry.k8s.io"},
		{"unknown repository", "/v2/kubeup/nothing/manifests/1?ns=registry.k8s.io"},
		{"other registry", "/v2/kubeup/app/manifests/1?ns=docker.io"},
		{"tag without content", "/v2/kubeup/gone/manifests/1?ns=registry.k8s.io"},
		{"absent digest", "/v2/kubeup/app/manifests/" + digest.FromString("absent").String() + "?ns=registry.k8s.io"},
		{"config is no manifest", "/v2/kubeup/app/manifests/" + f.config.Digest.String() + "?ns=registry.k8s.io"},
		{"layer is no manifest", "/v2/kubeup/app/manifests/" + f.layer.Digest.String() + "?ns=registry.k8s.io"},
		{"larger than 4 MiB", "/v2/kubeup/app/manifests/" + big.Digest.String() + "?ns=registry.k8s.io"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, http.MethodGet, tc.path)
			checkError(t, resp, body, http.StatusNotFound, "MANIFEST_UNKNOWN")
			resp, body = f.do(t, http.MethodHead, tc.path)
			if resp.StatusCode != http.StatusNotFound || len(body) != 0 {
				t.Errorf("HEAD: %s %q", resp.Status, body)
			}
		})
	}
	if !strings.Contains(f.log.String(), "level=DEBUG msg=\"registry mirror request failed\"") {
		t.Errorf("failed requests not logged at debug:\n%s", f.log)
	}
}

// checkError asserts a registry JSON error.
func checkError(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	short := body
	if len(short) > 200 {
		short = append(short[:200:200], "..."...)
	}
	var e struct {
		Errors []struct{ Code, Message string }
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("%s: body %q is not JSON: %v", resp.Status, short, err)
	}
	if resp.StatusCode != status || len(e.Errors) != 1 || e.Errors[0].Code != code || e.Errors[0].Message == "" {
		t.Fatalf("got %s %s, want %d %s", resp.Status, short, status, code)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	if resp.Header.Get("Docker-Content-Digest") != "" {
		t.Errorf("an error carries Docker-Content-Digest %s", resp.Header.Get("Docker-Content-Digest"))
	}
}

func TestBlob(t *testing.T) {
	f := newFixture(t)
	layer := f.store.blobs[f.layer.Digest]
	path := "/v2/kubeup/app/blobs/" + f.layer.Digest.String() + "?ns=registry.k8s.io"
	for _, m := range []string{http.MethodGet, http.MethodHead} {
		f.store.reads = nil
		resp, body := f.do(t, m, path)
		checkServed(t, resp, body, m, "application/octet-stream", layer)
		if m == http.MethodGet {
			// 3.3 MB in 1 MiB reads, not in http.ServeContent's 32 KiB pieces.
			if len(f.store.reads) > 5 {
				t.Errorf("%d reads of the store for %d bytes: %v", len(f.store.reads), len(layer), f.store.reads)
			}
		} else if len(f.store.reads) != 0 {
			t.Errorf("HEAD read the blob")
		}
	}

	resp, body := f.do(t, http.MethodGet, path, "Range", "bytes=1048570-1048599")
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, layer[1048570:1048600]) {
		t.Errorf("range: %s %q", resp.Status, body)
	}
	if got, want := resp.Header.Get("Content-Range"), fmt.Sprintf("bytes 1048570-1048599/%d", len(layer)); got != want {
		t.Errorf("Content-Range %q, want %q", got, want)
	}
	resp, body = f.do(t, http.MethodGet, path, "Range", fmt.Sprintf("bytes=%d-", len(layer)-5))
	if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, layer[len(layer)-5:]) {
		t.Errorf("suffix range: %s %q", resp.Status, body)
	}

	// Manifests are blobs too (containerd falls back to /blobs/ for digests).
	resp, body = f.do(t, http.MethodGet, "/v2/kubeup/app/blobs/"+f.manifest.Digest.String()+"?ns=registry.k8s.io")
	checkServed(t, resp, body, http.MethodGet, "application/octet-stream", f.store.blobs[f.manifest.Digest])

	resp, body = f.do(t, http.MethodGet, "/v2/kubeup/app/blobs/"+digest.FromString("absent").String()+"?ns=registry.k8s.io")
	checkError(t, resp, body, http.StatusNotFound, "BLOB_UNKNOWN")
}

func TestDockerHubLibrary(t *testing.T) {
	f := newFixture(t)
	f.store.images["docker.io/library/nginx:1.27"] = f.manifest
	for _, p := range []string{"/v2/library/nginx/manifests/1.27?ns=docker.io", "/v2/nginx/manifests/1.27?ns=docker.io"} {
		resp, body := f.do(t, http.MethodGet, p)
		checkServed(t, resp, body, http.MethodGet, ocispec.MediaTypeImageManifest, f.store.blobs[f.manifest.Digest])
	}
}

func TestRefused(t *testing.T) {
	f := newFixture(t)
	dgst := f.layer.Digest.String()
	for _, tc := range []struct {
		name, method, path string
		status             int
		code               string
	}{
		{"no ns", "GET", "/v2/kubeup/app/manifests/1", 404, "NAME_UNKNOWN"},
		{"no ns blob", "GET", "/v2/kubeup/app/blobs/" + dgst, 404, "NAME_UNKNOWN"},
		{"bad blob digest", "GET", "/v2/kubeup/app/blobs/sha256:1234?ns=registry.k8s.io", 400, "DIGEST_INVALID"},
		{"unknown algorithm", "GET", "/v2/kubeup/app/blobs/md5:d41d8cd98f00b204e9800998ecf8427e?ns=registry.k8s.io", 400, "DIGEST_INVALID"},
		{"blob by tag", "GET", "/v2/kubeup/app/blobs/1?ns=registry.k8s.io", 400, "DIGEST_INVALID"},
		{"bad manifest digest", "GET", "/v2/kubeup/app/manifests/sha256:zz?ns=registry.k8s.io", 400, "DIGEST_INVALID"},
		{"bad tag", "GET", "/v2/kubeup/app/manifests/.1?ns=registry.k8s.io", 400, "TAG_INVALID"},
		{"dot-dot", "GET", "/v2/../kubeup/app/manifests/1?ns=registry.k8s.io", 400, "NAME_INVALID"},
		{"dot-dot inside", "GET", "/v2/kubeup/../kubeup/app/manifests/1?ns=registry.k8s.io", 400, "NAME_INVALID"},
		{"escaped dot-dot", "GET", "/v2/kubeup/%2e%2e/app/manifests/1?ns=registry.k8s.io", 400, "NAME_INVALID"},
		{"empty component", "GET", "/v2/kubeup//app/manifests/1?ns=registry.k8s.io", 400, "NAME_INVALID"},
		{"leading slash", "GET", "/v2//kubeup/app/manifests/1?ns=registry.k8s.io", 400, "NAME_INVALID"},
		{"dot", "GET", "/v2/kubeup/./app/manifests/1?ns=registry.k8s.io", 400, "NAME_INVALID"},
		{"upper case", "GET", "/v2/Kubeup/app/manifests/1?ns=registry.k8s.io", 400, "NAME_INVALID"},
		{"ns with a path", "GET", "/v2/app/manifests/1?ns=registry.k8s.io/kubeup", 400, "NAME_INVALID"},
		{"ns traversal", "GET", "/v2/app/manifests/1?ns=..", 400, "NAME_INVALID"},
		{"no name", "GET", "/v2/manifests/1?ns=registry.k8s.io", 404, "UNSUPPORTED"},
		{"tags list", "GET", "/v2/kubeup/app/tags/list?ns=registry.k8s.io", 404, "UNSUPPORTED"},
		{"catalog", "GET", "/v2/_catalog", 404, "UNSUPPORTED"},
		{"empty tag", "GET", "/v2/kubeup/app/manifests/?ns=registry.k8s.io", 404, "UNSUPPORTED"},
		{"POST", "POST", "/v2/kubeup/app/blobs/uploads/?ns=registry.k8s.io", 405, "UNSUPPORTED"},
		{"PUT", "PUT", "/v2/kubeup/app/manifests/1?ns=registry.k8s.io", 405, "UNSUPPORTED"},
		{"DELETE", "DELETE", "/v2/kubeup/app/manifests/1?ns=registry.k8s.io", 405, "UNSUPPORTED"},
		{"DELETE blob", "DELETE", "/v2/kubeup/app/blobs/" + dgst + "?ns=registry.k8s.io", 405, "UNSUPPORTED"},
		{"PATCH", "PATCH", "/v2/kubeup/app/blobs/uploads/1?ns=registry.k8s.io", 405, "UNSUPPORTED"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := f.do(t, tc.method, tc.path)
			checkError(t, resp, body, tc.status, tc.code)
			if tc.status == 405 && resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("Allow %q", resp.Header.Get("Allow"))
			}
		})
	}
}

func TestNothingOutsideV2(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/", "/v2", "/metrics", "/v1/kubeup/app/manifests/1?ns=registry.k8s.io", "/x/v2/kubeup/app/blobs/" + f.layer.Digest.String() + "?ns=registry.k8s.io"} {
		for _, m := range []string{"GET", "POST"} {
			resp, body := f.do(t, m, p)
			if resp.StatusCode != http.StatusNotFound || bytes.Contains(body, []byte("layer data")) || resp.Header.Get("Docker-Distribution-API-Version") != "" {
				t.Errorf("%s %s: %s %q", m, p, resp.Status, body)
			}
		}
	}
}

func TestStoreFailure(t *testing.T) {
	f := newFixture(t)
	f.store.err = errors.New("containerd is down")
	resp, body := f.do(t, http.MethodGet, "/v2/kubeup/app/manifests/1?ns=registry.k8s.io")
	checkError(t, resp, body, http.StatusInternalServerError, "UNKNOWN")
	resp, body = f.do(t, http.MethodGet, "/v2/kubeup/app/blobs/"+f.layer.Digest.String()+"?ns=registry.k8s.io")
	checkError(t, resp, body, http.StatusInternalServerError, "UNKNOWN")
}

// A corrupt manifest in the store is not served under its digest.
func TestManifestDigestVerified(t *testing.T) {
	f := newFixture(t)
	f.store.blobs[f.index.Digest] = bytes.ToUpper(f.store.blobs[f.index.Digest])
	resp, body := f.do(t, http.MethodGet, "/v2/kubeup/app/manifests/1?ns=registry.k8s.io")
	checkError(t, resp, body, http.StatusInternalServerError, "UNKNOWN")
}

func TestSplitPath(t *testing.T) {
	for p, want := range map[string][3]string{
		"a/b/manifests/1":           {"a/b", "manifests", "1"},
		"a/manifests/b/manifests/1": {"a/manifests/b", "manifests", "1"},
		"blobs/blobs/sha256:00":     {"blobs", "blobs", "sha256:00"},
	} {
		repo, kind, ref, ok := splitPath(p)
		if !ok || [3]string{repo, kind, ref} != want {
			t.Errorf("splitPath(%q) = %q %q %q %v, want %q", p, repo, kind, ref, ok, want)
		}
	}
	for _, p := range []string{"", "a", "a/1", "a/tags/list", "a/manifests/", "manifests/1"} {
		if repo, kind, ref, ok := splitPath(p); ok && repo != "" {
			t.Errorf("splitPath(%q) = %q %q %q", p, repo, kind, ref)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
