package agent

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
)

const (
	fakeDigestA = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	fakeDigestB = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
)

// fakeCtrImport is a ctr that keeps its arguments and stdin in its
// directory and answers as `ctr images import --local` does: a warning on
// stderr, a line per image on stdout (the second written in two parts, as
// ctr prints "...done" after the unpack).
const fakeCtrImport = `printf '%s\n' "$@" > "$dir/args"
cat > "$dir/stdin" || exit 3
echo 'time="2026-01-01T00:00:00Z" level=warning msg="DEPRECATION: something"' >&2
echo 'unpacking registry.kubeup.dev/testbox:1 (` + fakeDigestA + `)...done'
printf 'unpacking import-2026-01-01@` + fakeDigestB + ` (` + fakeDigestB + `)...'
echo done
`

// fakeCtr makes the daemons the test builds after it run script as ctr;
// script sees its directory, where it may keep files, as $dir. Tests
// that call it must not be parallel.
func fakeCtr(t *testing.T, script string) (dir string) {
	t.Helper()
	dir = t.TempDir()
	path := filepath.Join(dir, "ctr")
	if err := os.WriteFile(path, []byte("#!/bin/sh\ndir='"+dir+"'\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	old := importCtr
	importCtr = path
	t.Cleanup(func() { importCtr = old })
	return dir
}

// adminClient is the host's agent client with an admin certificate, on a
// real agent handler.
func adminClient(t *testing.T, td *testDaemon) *Client {
	t.Helper()
	srv := serve(t, td)
	cfg := td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup}))
	return &Client{Base: srv.URL, HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 30 * time.Second}}
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func argsOf(t *testing.T, dir string) []string {
	t.Helper()
	return strings.Split(strings.TrimSuffix(string(readFile(t, filepath.Join(dir, "args"))), "\n"), "\n")
}

// An archive goes through the client and the agent's handler into ctr's
// stdin byte for byte (3 MB: far more than any buffer on the way), ctr's
// arguments are the import's, and the answer lists the images ctr named.
func TestImportImages(t *testing.T) {
	dir := fakeCtr(t, fakeCtrImport)
	td := newTestDaemon(t, nil)
	c := adminClient(t, td)
	archive := randomBytes(t, 3<<20)
	res, err := c.ImportImages(context.Background(), bytes.NewReader(archive), int64(len(archive)), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "stdin")); !bytes.Equal(got, archive) {
		t.Errorf("ctr received %d bytes, not the %d sent", len(got), len(archive))
	}
	want := []ImportedImage{{Ref: "registry.kubeup.dev/testbox:1", Digest: fakeDigestA}, {Ref: "import-2026-01-01@" + fakeDigestB, Digest: fakeDigestB}}
	if res.Machine != "node-0" || !reflect.DeepEqual(res.Images, want) || res.Bytes != int64(len(archive)) || res.Pinned {
		t.Errorf("answer %+v, want node-0, %d bytes, images %v, not pinned", res, len(archive), want)
	}
	if got := argsOf(t, dir); !reflect.DeepEqual(got, CtrImportArgs(false)) {
		t.Errorf("ctr %q, want %q", got, CtrImportArgs(false))
	}

	// Pinned, and of unknown size (chunked).
	res, err = c.ImportImages(context.Background(), io.MultiReader(bytes.NewReader(archive[:1000])), -1, true)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Pinned || res.Bytes != 1000 || !bytes.Equal(readFile(t, filepath.Join(dir, "stdin")), archive[:1000]) {
		t.Errorf("pinned import: %+v", res)
	}
	if got := argsOf(t, dir); !reflect.DeepEqual(got, CtrImportArgs(true)) {
		t.Errorf("ctr %q, want %q", got, CtrImportArgs(true))
	}
}

// The command line, flag by flag (each checked against ctr v2.4.2's
// cmd/ctr/commands/images/import.go and its global flags): the CRI
// namespace on containerd's socket, the client-side import (whose output
// names the images), the machine's own platform only, names for unnamed
// images, and the labels of preloaded images with pin.
func TestCtrImportArgs(t *testing.T) {
	t.Parallel()
	base := "--address /run/containerd/containerd.sock --namespace k8s.io images import --local --platform linux/" + runtime.GOARCH +
		" --digests --skip-digest-for-named"
	if got := strings.Join(CtrImportArgs(false), " "); got != base+" -" {
		t.Errorf("without pin: %s", got)
	}
	if got := strings.Join(CtrImportArgs(true), " "); got != base+" --label io.cri-containerd.image=managed --label io.cri-containerd.pinned=pinned -" {
		t.Errorf("pinned: %s", got)
	}
	if ContainerdSocket != components.ContainerdSocket {
		t.Errorf("ContainerdSocket %s, containerd's %s", ContainerdSocket, components.ContainerdSocket)
	}
}

// Admin certificates only; ctr does not run for a refused request.
func TestImportImagesAuth(t *testing.T) {
	dir := fakeCtr(t, fakeCtrImport)
	td := newTestDaemon(t, nil)
	srv := serve(t, td)
	anon := newClient(t, srv, td.pki.clientTLS(t))
	user := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "prometheus", []string{"monitoring"})))
	admin := newClient(t, srv, td.pki.clientTLS(t, td.pki.ca.tlsCert(t, "kubeup-admin", []string{AdminGroup})))
	if code, _ := anon.post("/v1/images/import", []byte("x")); code != 401 {
		t.Errorf("anonymous: %d", code)
	}
	if code, body := user.post("/v1/images/import", []byte("x")); code != 403 || !strings.Contains(body, AdminGroup) {
		t.Errorf("non-admin: %d %q", code, body)
	}
	if code, _, _ := admin.get("/v1/images/import", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d", code)
	}
	if code, body := admin.post("/v1/images/import?pin=yes-please", []byte("x")); code != 400 || !strings.Contains(body, `pin="yes-please"`) {
		t.Errorf("bad pin: %d %q", code, body)
	}
	if _, err := os.Stat(filepath.Join(dir, "args")); !os.IsNotExist(err) {
		t.Errorf("ctr ran for a refused request (%v)", err)
	}
}

// ctr's failure is a 422 with the end of its stderr, also when it fails
// before reading the archive (the client still gets the answer, not a
// reset connection).
func TestImportImagesCtrFails(t *testing.T) {
	for _, tc := range []struct{ name, script string }{
		{"after reading", "cat > /dev/null\necho 'time=\"x\" level=warning msg=\"DEPRECATION: y\"' >&2\necho 'ctr: content digest sha256:0123: not found' >&2\nexit 1\n"},
		{"at once", "echo 'ctr: content digest sha256:0123: not found' >&2\nexit 1\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeCtr(t, tc.script)
			td := newTestDaemon(t, nil)
			c := adminClient(t, td)
			archive := randomBytes(t, 4<<20)
			_, err := c.ImportImages(context.Background(), bytes.NewReader(archive), int64(len(archive)), false)
			if err == nil || !strings.Contains(err.Error(), "422") || !strings.Contains(err.Error(), "ctr: content digest sha256:0123: not found") {
				t.Errorf("err %v, want a 422 with ctr's error", err)
			}
		})
	}
	// ctr is not there: 500.
	old := importCtr
	importCtr = filepath.Join(t.TempDir(), "ctr")
	t.Cleanup(func() { importCtr = old })
	c := adminClient(t, newTestDaemon(t, nil))
	if _, err := c.ImportImages(context.Background(), strings.NewReader("x"), 1, false); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("no ctr: %v", err)
	}
}

// ctr stops at the tar's end marker; the padding after it (here 900 kB,
// more than the pipe and the HTTP server's own discard hold) is read and
// dropped, and the client gets the answer.
func TestImportImagesTrailingPadding(t *testing.T) {
	dir := fakeCtr(t, "head -c 1024 > \"$dir/stdin\"\necho 'unpacking registry.kubeup.dev/testbox:1 ("+fakeDigestA+")...done'\n")
	td := newTestDaemon(t, nil)
	c := adminClient(t, td)
	archive := append(randomBytes(t, 1024), make([]byte, 900<<10)...)
	res, err := c.ImportImages(context.Background(), bytes.NewReader(archive), int64(len(archive)), false)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Images) != 1 || res.Bytes != int64(len(archive)) || !bytes.Equal(readFile(t, filepath.Join(dir, "stdin")), archive[:1024]) {
		t.Errorf("answer %+v", res)
	}
}

// One import at a time: a second one while the first streams is a 409,
// and the first ends well.
func TestImportImagesOneAtATime(t *testing.T) {
	dir := fakeCtr(t, fakeCtrImport)
	td := newTestDaemon(t, nil)
	c := adminClient(t, td)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.CloseWithError(errors.New("test ended")) }) // before the server's Close
	type answer struct {
		res *ImportResult
		err error
	}
	first := make(chan answer, 1)
	go func() {
		res, err := c.ImportImages(context.Background(), pr, -1, false)
		first <- answer{res, err}
	}()
	pw.Write([]byte("first part"))
	// The first import is in ctr once its stdin has the bytes.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if data, _ := os.ReadFile(filepath.Join(dir, "stdin")); string(data) == "first part" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first import did not reach ctr")
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.ImportImages(ctx, strings.NewReader("second"), 6, false); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("second import while the first runs: %v", err)
	}
	pw.Close()
	var a answer
	select {
	case a = <-first:
	case <-time.After(10 * time.Second):
		t.Fatal("the first import did not end")
	}
	if a.err != nil || a.res.Bytes != 10 {
		t.Fatalf("first import: %+v %v", a.res, a.err)
	}
	if _, err := c.ImportImages(context.Background(), strings.NewReader("third"), 5, false); err != nil {
		t.Errorf("import after the first ended: %v", err)
	}
}

// An upload that breaks off kills ctr before it sees the end of its
// input: nothing of a truncated archive is imported.
func TestImportImagesBrokenUpload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctr := filepath.Join(dir, "ctr")
	os.WriteFile(ctr, []byte("#!/bin/sh\ncat > '"+dir+"/stdin'\necho imported > '"+dir+"/done'\n"), 0o755)
	h := &imageImport{ctr: ctr, machine: "node-0", now: time.Now, log: slog.New(slog.NewTextHandler(io.Discard, nil)), busy: make(chan struct{}, 1)}
	body := io.MultiReader(bytes.NewReader(randomBytes(t, 100<<10)), iotestErrReader{errors.New("connection reset by peer")})
	res, code, err := h.run(context.Background(), body, false)
	if code != 400 || err == nil || !strings.Contains(err.Error(), "after 102400 bytes: connection reset by peer") || res.Bytes != 100<<10 {
		t.Errorf("%d %v %+v", code, err, res)
	}
	if _, err := os.Stat(filepath.Join(dir, "done")); !os.IsNotExist(err) {
		t.Error("ctr ran to its end after a broken upload")
	}
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// ctr's output is read line by line whatever the writes' boundaries; an
// overlong line is skipped, not kept.
func TestCtrImportOutput(t *testing.T) {
	t.Parallel()
	var o ctrImportOutput
	text := "noise\nunpacking a/b:1 (" + fakeDigestA + ")...done\r\n" + strings.Repeat("x", 2*maxCtrLine) +
		"\nunpacking c@" + fakeDigestB + " (" + fakeDigestB + ")...done\nunpacking d:1 (" + fakeDigestA + ")...\n"
	for i := 0; i < len(text); i += 7 {
		o.Write([]byte(text[i:min(i+7, len(text))]))
	}
	want := []ImportedImage{{"a/b:1", fakeDigestA}, {"c@" + fakeDigestB, fakeDigestB}}
	if !reflect.DeepEqual(o.images, want) {
		t.Errorf("images %v, want %v", o.images, want)
	}
	if cap(o.line) > 2*maxCtrLine {
		t.Errorf("line buffer grew to %d", cap(o.line))
	}
	tb := &tailBuffer{max: 10}
	tb.Write([]byte("0123456"))
	tb.Write([]byte("789abc"))
	if got := tb.String(); got != "...3456789abc" {
		t.Errorf("tail %q", got)
	}
	tb.Write([]byte(strings.Repeat("z", 30) + "end"))
	if got := tb.String(); got != "...zzzzzzzend" {
		t.Errorf("tail %q", got)
	}
}
