// Package mirror serves the images the machine's containerd already holds
// as a read-only, pull-only OCI distribution ("registry v2") API, so that
// containerd can use the machine itself as a registry mirror (what k3s's
// embedded Spegel and Talos's image cache do): a pod with imagePullPolicy
// Always for an image side-loaded into an air-gapped machine "pulls" it
// from here. containerd is pointed at the mirror by a hosts.toml such as
//
//	# /etc/containerd/certs.d/_default/hosts.toml
//	[host."http://127.0.0.1:PORT"]
//	  capabilities = ["pull", "resolve"]
//
// # How containerd names what it asks a mirror for
//
// Checked in containerd v2.4.2, core/remotes/docker: the resolver splits a
// reference into its host (reference.Spec.Hostname) and repository
// (dockerBase.repository: the locator without "host/"), and builds every
// request path as "/" + host.Path + "/" + repository + "/manifests/<tag or
// digest>" (or "/blobs/<digest>"). request.addNamespace then appends the
// query parameter ns=<reference host> whenever the host it talks to is not
// the reference's own registry (RegistryHost.isProxy: any host other than
// the reference host, except registry-1.docker.io for docker.io) — for
// resolve (resolver.go), manifest and blob fetches (fetcher.go) and
// referrers alike. References reach the resolver fully normalized (the CRI
// plugin stores and pulls "docker.io/library/nginx:1.27"), so a pull of
// nginx:1.27 through this mirror asks for
//
//	HEAD /v2/library/nginx/manifests/1.27?ns=docker.io
//
// and the image is found under ns + "/" + repository + ":" + tag, exactly
// the name containerd's image store (namespace k8s.io) gives it. Requests
// without ns are not for a mirror of a named registry and get 404.
//
// A digest-addressed manifest or blob is served whenever the content store
// holds it, whatever repository the request names: the content store is
// shared by every image. The handler is meant for a loopback listener.
package mirror

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/errdefs"
	"github.com/distribution/reference"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store is what the handler needs from containerd.
type Store interface {
	// Resolve returns the target descriptor of the image named name (a full
	// reference such as "registry.k8s.io/e2e-test-images/agnhost:2.66.1" or
	// "docker.io/library/nginx:1.27"); an error wrapping errdefs.ErrNotFound
	// when there is none.
	Resolve(ctx context.Context, name string) (ocispec.Descriptor, error)
	// Info returns the size of the blob with that digest (errdefs.ErrNotFound
	// when absent).
	Info(ctx context.Context, dgst digest.Digest) (content.Info, error)
	// ReaderAt opens the blob.
	ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error)
}

// maxManifestSize is the largest blob served as a manifest (containerd's
// own limit, remotes/docker.MaxManifestSize).
const maxManifestSize = 4 << 20

// readChunk is how much of a blob one read from the store asks for: each
// read of containerd's content proxy is a gRPC round trip, and
// http.ServeContent copies in 32 KiB pieces.
const readChunk = 1 << 20

// Registry API error codes (distribution spec, "Error Codes").
const (
	codeBlobUnknown     = "BLOB_UNKNOWN"
	codeDigestInvalid   = "DIGEST_INVALID"
	codeManifestUnknown = "MANIFEST_UNKNOWN"
	codeNameInvalid     = "NAME_INVALID"
	codeNameUnknown     = "NAME_UNKNOWN"
	codeTagInvalid      = "TAG_INVALID"
	codeUnsupported     = "UNSUPPORTED"
	codeUnknown         = "UNKNOWN"
)

// Handler serves GET and HEAD of /v2/, /v2/<name>/manifests/<tag-or-digest>
// and /v2/<name>/blobs/<digest> from s; every other method is refused
// (405) and nothing outside /v2/ is served. Failed requests are logged at
// Debug on log (nil discards).
func Handler(s Store, log *slog.Logger) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &handler{store: s, log: log}
}

type handler struct {
	store Store
	log   *slog.Logger
}

// apiError is a failed request: the registry error it answers with, and
// the cause, for the log.
type apiError struct {
	status        int
	code, message string
	cause         error
}

func fail(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// storeError turns an error of the store into a 404 with code when it is
// errdefs.ErrNotFound, a 500 otherwise.
func storeError(err error, code, what string) *apiError {
	if errdefs.IsNotFound(err) {
		return &apiError{status: http.StatusNotFound, code: code, message: what + " is not in this machine's image store", cause: err}
	}
	return &apiError{status: http.StatusInternalServerError, code: codeUnknown, message: fmt.Sprintf("%s: %v", what, err), cause: err}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e := h.serve(w, r)
	if e == nil {
		return
	}
	attrs := []any{"method", r.Method, "path", r.URL.Path, "query", r.URL.RawQuery, "status", e.status, "code", e.code, "message", e.message}
	if e.cause != nil {
		attrs = append(attrs, "err", e.cause)
	}
	h.log.Debug("registry mirror request failed", attrs...)
	if e.code == "" {
		http.NotFound(w, r)
		return
	}
	body, _ := json.Marshal(map[string]any{"errors": []map[string]string{{"code": e.code, "message": e.message}}})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(e.status)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

func (h *handler) serve(w http.ResponseWriter, r *http.Request) *apiError {
	if !strings.HasPrefix(r.URL.Path, "/v2/") {
		return &apiError{status: http.StatusNotFound} // not ours: a plain 404
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		return fail(http.StatusMethodNotAllowed, codeUnsupported, "%s: this registry mirror is read-only and serves only GET and HEAD", r.Method)
	}
	w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
	if r.URL.Path == "/v2/" {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if r.Method == http.MethodGet {
			io.WriteString(w, "{}")
		}
		return nil
	}
	repo, kind, ref, ok := splitPath(strings.TrimPrefix(r.URL.Path, "/v2/"))
	if !ok {
		return fail(http.StatusNotFound, codeUnsupported, "%s: this registry mirror serves only manifests and blobs", r.URL.Path)
	}
	ns := r.URL.Query().Get("ns")
	if ns == "" {
		return fail(http.StatusNotFound, codeNameUnknown, "%s: no ns query parameter: this registry mirror serves only images of named upstream registries (containerd adds ns=<registry host> when it pulls through a mirror)", repo)
	}
	name, err := repositoryName(ns, repo)
	if err != nil {
		return fail(http.StatusBadRequest, codeNameInvalid, "%s/%s: %v", ns, repo, err)
	}
	if kind == "manifests" {
		return h.manifest(w, r, name, ref)
	}
	dgst, err := digest.Parse(ref)
	if err != nil {
		return fail(http.StatusBadRequest, codeDigestInvalid, "%s: %v", ref, err)
	}
	return h.blob(w, r, dgst)
}

// splitPath splits "<name>/manifests/<reference>" or "<name>/blobs/<digest>"
// (the part of the path after /v2/).
func splitPath(p string) (repo, kind, ref string, ok bool) {
	rest, ref, ok := cutLast(p, "/")
	if !ok || ref == "" {
		return "", "", "", false
	}
	repo, kind, ok = cutLast(rest, "/")
	if !ok || (kind != "manifests" && kind != "blobs") {
		return "", "", "", false
	}
	return repo, kind, ref, true
}

func cutLast(s, sep string) (before, after string, found bool) {
	if i := strings.LastIndex(s, sep); i >= 0 {
		return s[:i], s[i+len(sep):], true
	}
	return s, "", false
}

// repositoryName validates the registry host ns and the repository path
// (distribution reference grammar: no "..", no empty components, no
// upper case) and joins them. Docker Hub's official images live under
// library/, as the Hub itself resolves them.
func repositoryName(ns, repo string) (reference.Named, error) {
	if ns == "docker.io" && !strings.Contains(repo, "/") {
		repo = "library/" + repo
	}
	named, err := reference.WithName(ns + "/" + repo)
	if err != nil {
		return nil, err
	}
	if reference.Domain(named) != ns || reference.Path(named) != repo {
		return nil, errors.New("invalid registry host")
	}
	return named, nil
}

// manifest serves a manifest by tag (the image's target in the image
// store) or by digest (any manifest in the content store).
func (h *handler) manifest(w http.ResponseWriter, r *http.Request, name reference.Named, ref string) *apiError {
	ctx := r.Context()
	var desc ocispec.Descriptor
	if strings.Contains(ref, ":") { // tags have no colon; digests do
		dgst, err := digest.Parse(ref)
		if err != nil {
			return fail(http.StatusBadRequest, codeDigestInvalid, "%s: %v", ref, err)
		}
		desc.Digest = dgst
	} else {
		tagged, err := reference.WithTag(name, ref)
		if err != nil {
			return fail(http.StatusBadRequest, codeTagInvalid, "%s: %v", ref, err)
		}
		if desc, err = h.store.Resolve(ctx, tagged.String()); err != nil {
			return storeError(err, codeManifestUnknown, "image "+tagged.String())
		}
	}
	info, err := h.store.Info(ctx, desc.Digest)
	if err != nil {
		return storeError(err, codeManifestUnknown, "manifest "+desc.Digest.String())
	}
	if info.Size > maxManifestSize {
		return fail(http.StatusNotFound, codeManifestUnknown, "%s: %d bytes is too large for a manifest", desc.Digest, info.Size)
	}
	desc.Size = info.Size
	b, err := readBlob(ctx, h.store, desc)
	if err != nil {
		return storeError(err, codeManifestUnknown, "manifest "+desc.Digest.String())
	}
	if desc.MediaType == "" {
		if desc.MediaType = manifestMediaType(b); desc.MediaType == "" {
			return fail(http.StatusNotFound, codeManifestUnknown, "%s is not a manifest", desc.Digest)
		}
	}
	setHeaders(w, desc.MediaType, desc.Digest)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	return nil
}

// blob serves a blob of the content store, streamed in readChunk reads;
// Range requests are honoured.
func (h *handler) blob(w http.ResponseWriter, r *http.Request, dgst digest.Digest) *apiError {
	ctx := r.Context()
	info, err := h.store.Info(ctx, dgst)
	if err != nil {
		return storeError(err, codeBlobUnknown, "blob "+dgst.String())
	}
	if r.Method == http.MethodHead {
		setHeaders(w, "application/octet-stream", dgst)
		w.Header().Set("Accept-Ranges", "bytes")
		w.Header().Set("Content-Length", strconv.FormatInt(info.Size, 10))
		return nil
	}
	ra, err := h.store.ReaderAt(ctx, ocispec.Descriptor{Digest: dgst, Size: info.Size})
	if err != nil {
		return storeError(err, codeBlobUnknown, "blob "+dgst.String())
	}
	defer ra.Close()
	setHeaders(w, "application/octet-stream", dgst)
	sec := io.NewSectionReader(ra, 0, ra.Size())
	http.ServeContent(w, r, "", time.Time{}, &chunkedReader{sec: sec, buf: bufio.NewReaderSize(sec, readChunk)})
	return nil
}

func setHeaders(w http.ResponseWriter, mediaType string, dgst digest.Digest) {
	w.Header().Set("Content-Type", mediaType)
	w.Header().Set("Docker-Content-Digest", dgst.String())
	w.Header().Set("Etag", `"`+dgst.String()+`"`)
}

// readBlob reads a whole (small) blob and checks its digest.
func readBlob(ctx context.Context, s Store, desc ocispec.Descriptor) ([]byte, error) {
	ra, err := s.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	defer ra.Close()
	if ra.Size() != desc.Size {
		return nil, fmt.Errorf("%d bytes, want %d", ra.Size(), desc.Size)
	}
	b := make([]byte, desc.Size)
	if n, err := ra.ReadAt(b, 0); n != len(b) {
		return nil, fmt.Errorf("read %d of %d bytes: %w", n, len(b), err)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("content has digest %s", got)
	}
	return b, nil
}

// manifestMediaType tells what kind of manifest b is when the request does
// not say (by digest): its mediaType field, or else an OCI index when it
// lists manifests and an OCI image manifest when it has a config or
// layers. Only schema version 2 documents are manifests (an image config
// has a "config" too); "" means b is not a manifest.
func manifestMediaType(b []byte) string {
	var m struct {
		SchemaVersion int             `json:"schemaVersion"`
		MediaType     string          `json:"mediaType"`
		Manifests     json.RawMessage `json:"manifests"`
		Config        json.RawMessage `json:"config"`
		Layers        json.RawMessage `json:"layers"`
	}
	if json.Unmarshal(b, &m) != nil || m.SchemaVersion != 2 {
		return ""
	}
	switch {
	case m.MediaType != "":
		return m.MediaType
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case m.Config != nil || m.Layers != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}

// chunkedReader is the io.ReadSeeker http.ServeContent reads a blob from,
// buffered so that each read of the store asks for readChunk bytes. Seek
// drops the buffer; ServeContent seeks only from the start or the end.
type chunkedReader struct {
	sec *io.SectionReader
	buf *bufio.Reader
}

func (c *chunkedReader) Read(p []byte) (int, error) { return c.buf.Read(p) }

func (c *chunkedReader) Seek(offset int64, whence int) (int64, error) {
	n, err := c.sec.Seek(offset, whence)
	c.buf.Reset(c.sec)
	return n, err
}
