package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Image import: POST /v1/images/import streams an image archive into the
// machine's containerd by way of the image's ctr, as `kind load
// image-archive` does into its nodes.
const (
	// DefaultCtr is containerd's ctr in every image (a link to the
	// containerd multi-call binary).
	DefaultCtr = "/usr/local/bin/ctr"
	// ContainerdSocket is containerd's gRPC socket
	// (components.ContainerdSocket; a test keeps them equal).
	ContainerdSocket = "/run/containerd/containerd.sock"
	// ContainerdNamespace is the CRI plugin's namespace: the images the
	// kubelet sees (and garbage-collects).
	ContainerdNamespace = "k8s.io"
	// PinnedLabel is the label that exempts an image from the kubelet's
	// image garbage collection (the CRI plugin reports such images
	// pinned); ManagedLabel is the one the CRI plugin puts on the images
	// it pulls. Preloaded images carry both (images/preload Labels).
	PinnedLabel  = "io.cri-containerd.pinned=pinned"
	ManagedLabel = "io.cri-containerd.image=managed"
)

// Bounds of what the agent keeps of ctr's output: the tail of its stderr
// for the error, lines of its stdout for the image names, images listed.
const (
	maxCtrStderr   = 4096
	maxCtrLine     = 4096
	maxImportedRef = 10000
	// maxArchiveTrailer is how much of the body after the tar's end
	// marker (record padding, which ctr does not read) is read and thrown
	// away.
	maxArchiveTrailer = 1 << 20
	// ctrWaitDelay bounds the wait for ctr's output pipes once it exited.
	ctrWaitDelay = 10 * time.Second
)

// importCtr is the ctr the import runs; a variable so that tests run a
// fake one.
var importCtr = DefaultCtr

// CtrImportArgs is POST /v1/images/import's ctr command line (after the
// binary): the archive from stdin into the CRI namespace.
//   - --local: the client-side import, whose output names every image in
//     full ("unpacking REF (DIGEST)...done"; the transfer service's
//     progress display cuts names at 40 characters) and unpacks them into
//     containerd's default snapshotter, overlayfs, the CRI plugin's;
//   - --platform of the machine, matched strictly: only its content is
//     imported, so an archive whose index names platforms it does not
//     carry (`docker save` with Docker's containerd image store, attestation
//     manifests) imports, where --all-platforms fails with "content digest
//     ... not found" (kind#3795, containerd#11344);
//   - --digests --skip-digest-for-named: an image without a name in the
//     archive is kept as import-DATE@sha256:... instead of being
//     garbage-collected at once; a named one gets no such extra name;
//   - with pin, the labels preloaded images carry (replacing the
//     image's labels); without, an existing image's labels stay.
func CtrImportArgs(pin bool) []string {
	args := []string{"--address", ContainerdSocket, "--namespace", ContainerdNamespace,
		"images", "import", "--local", "--platform", "linux/" + runtime.GOARCH,
		"--digests", "--skip-digest-for-named"}
	if pin {
		args = append(args, "--label", ManagedLabel, "--label", PinnedLabel)
	}
	return append(args, "-")
}

// ImportedImage is an image an import stored.
type ImportedImage struct {
	Ref    string `json:"ref"`
	Digest string `json:"digest"`
}

// ImportResult is POST /v1/images/import's answer.
type ImportResult struct {
	Machine string `json:"machine"`
	// Images are the images ctr reports stored, in its order.
	Images []ImportedImage `json:"images"`
	Pinned bool            `json:"pinned"`
	// Bytes is the size of the archive received.
	Bytes   int64   `json:"bytes"`
	Seconds float64 `json:"seconds"`
}

// imageImport serves POST /v1/images/import, one import at a time (each
// runs a ctr beside the agent, within its memory limit).
type imageImport struct {
	ctr     string
	machine string
	now     func() time.Time
	log     *slog.Logger
	busy    chan struct{}
}

func (d *Daemon) imageImport() http.Handler {
	return &imageImport{ctr: importCtr, machine: d.cfg.Machine, now: d.now,
		log: d.log.With("task", "image-import"), busy: make(chan struct{}, 1)}
}

// ServeHTTP streams the body, an OCI or docker archive (a tar, not
// compressed), into ctr's stdin as it arrives: the agent holds 32 kB of
// it at a time. ?pin=true pins the images. The answer is an ImportResult,
// or an error: 400 for a bad query or an upload that broke off (ctr is
// killed, so no part of the archive is kept), 409 while another import
// runs, 422 when ctr refused the archive (with the end of ctr's stderr),
// 500 when ctr cannot be run.
func (h *imageImport) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pin := false
	if v := r.URL.Query().Get("pin"); v != "" {
		var err error
		if pin, err = strconv.ParseBool(v); err != nil {
			http.Error(w, fmt.Sprintf("pin=%q: want true or false", v), http.StatusBadRequest)
			return
		}
	}
	select {
	case h.busy <- struct{}{}:
		defer func() { <-h.busy }()
	default:
		http.Error(w, "an image import is already running on this machine; try again when it ends", http.StatusConflict)
		return
	}
	start := h.now()
	res, code, err := h.run(r.Context(), r.Body, pin)
	res.Seconds = h.now().Sub(start).Seconds()
	if err != nil {
		h.log.Warn("image import failed", "bytes", res.Bytes, "seconds", res.Seconds, "err", err)
		http.Error(w, err.Error(), code)
		return
	}
	refs := make([]string, len(res.Images))
	for i, img := range res.Images {
		refs[i] = img.Ref
	}
	h.log.Info("images imported", "images", refs, "pinned", pin, "bytes", res.Bytes, "seconds", res.Seconds)
	writeJSON(w, http.StatusOK, res)
}

// run pipes body into ctr and returns what it imported, or an error with
// its HTTP status.
func (h *imageImport) run(ctx context.Context, body io.Reader, pin bool) (ImportResult, int, error) {
	res := ImportResult{Machine: h.machine, Images: []ImportedImage{}, Pinned: pin}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(ctx, h.ctr, CtrImportArgs(pin)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return res, http.StatusInternalServerError, err
	}
	out, stderr := &ctrImportOutput{}, &tailBuffer{max: maxCtrStderr}
	cmd.Stdout, cmd.Stderr = out, stderr
	cmd.WaitDelay = ctrWaitDelay
	if err := cmd.Start(); err != nil {
		return res, http.StatusInternalServerError, fmt.Errorf("run ctr: %w", err)
	}
	in := &countingReader{r: body}
	_, copyErr := io.Copy(stdin, in)
	res.Bytes = in.n
	if in.err != nil {
		// The upload broke off: kill ctr before it sees the end of its
		// input (now, not when the context's watcher gets to it), so
		// that a truncated archive is not imported in part.
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
		return res, http.StatusBadRequest, fmt.Errorf("reading the archive from the request after %d bytes: %w; nothing imported", in.n, in.err)
	}
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		return res, http.StatusUnprocessableEntity, fmt.Errorf("ctr images import (%d bytes received): %w: %s", in.n, err, stderr)
	}
	if copyErr != nil {
		// ctr stopped reading at the tar's end marker and exited well:
		// what follows is padding (GNU tar pads to 10 kB records). Read
		// it, so that Bytes is the whole upload and the connection stays
		// usable.
		io.Copy(io.Discard, io.LimitReader(in, maxArchiveTrailer))
		res.Bytes = in.n
	}
	res.Images = append(res.Images, out.images...)
	return res, http.StatusOK, nil
}

// countingReader counts what was read and keeps the first read error
// (io.EOF is not one).
type countingReader struct {
	r   io.Reader
	n   int64
	err error
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if err != nil && err != io.EOF && c.err == nil {
		c.err = err
	}
	return n, err
}

// ctrUnpacked is the line `ctr images import --local` prints for every
// image it stored and unpacked.
var ctrUnpacked = regexp.MustCompile(`^unpacking (\S+) \((sha256:[0-9a-f]{64})\)\.\.\.done$`)

// ctrImportOutput collects the images from ctr's stdout, line by line, in
// bounded memory.
type ctrImportOutput struct {
	line   []byte
	long   bool // the current line passed maxCtrLine: skipped
	images []ImportedImage
}

func (o *ctrImportOutput) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk = p[:i]
		}
		if !o.long && len(o.line)+len(chunk) <= maxCtrLine {
			o.line = append(o.line, chunk...)
		} else {
			o.long, o.line = true, o.line[:0]
		}
		if i < 0 {
			break
		}
		if !o.long {
			o.addLine(string(bytes.TrimRight(o.line, "\r")))
		}
		o.line, o.long, p = o.line[:0], false, p[i+1:]
	}
	return n, nil
}

func (o *ctrImportOutput) addLine(line string) {
	m := ctrUnpacked.FindStringSubmatch(line)
	if m == nil || len(o.images) >= maxImportedRef {
		return
	}
	o.images = append(o.images, ImportedImage{Ref: m[1], Digest: m[2]})
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max     int
	b       []byte
	dropped bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) >= t.max {
		t.b, t.dropped = append(t.b[:0], p[len(p)-t.max:]...), true
		return n, nil
	}
	if over := len(t.b) + len(p) - t.max; over > 0 {
		t.b, t.dropped = append(t.b[:0], t.b[over:]...), true
	}
	t.b = append(t.b, p...)
	return n, nil
}

func (t *tailBuffer) String() string {
	s := strings.TrimSpace(string(t.b))
	if s == "" {
		return "(no output on stderr)"
	}
	if t.dropped {
		s = "..." + s
	}
	return s
}
