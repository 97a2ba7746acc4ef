package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blakesmith/ar"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/ulikunitz/xz"

	"kubeup.dev/kubeup/images"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fileServer serves fixed files, counting requests. "/short/..." declares a
// Content-Length larger than the body it sends.
func fileServer(t *testing.T, files map[string][]byte) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if name, ok := strings.CutPrefix(r.URL.Path, "/short/"); ok {
			b := files["/"+name]
			w.Header().Set("Content-Length", fmt.Sprint(len(b)+100))
			w.Write(b)
			return
		}
		b, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, &hits
}

func noFiles(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("left behind: %s", p)
		}
		return nil
	})
}

func TestFetchVerified(t *testing.T) {
	content := []byte("the real kubelet")
	srv, hits := fileServer(t, map[string][]byte{"/kubelet": content})
	ctx := context.Background()
	p := progress{w: &strings.Builder{}, name: "test"}

	t.Run("good", func(t *testing.T) {
		dir := t.TempDir()
		got, err := fetchVerified(ctx, srv.Client(), srv.URL+"/kubelet", digest(content), dir, p)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(got); !bytes.Equal(b, content) {
			t.Fatalf("content %q", b)
		}
		// The second time it comes from the download cache.
		before := hits.Load()
		if _, err := fetchVerified(ctx, srv.Client(), srv.URL+"/kubelet", digest(content), dir, p); err != nil {
			t.Fatal(err)
		}
		if hits.Load() != before {
			t.Error("verified download fetched again")
		}
	})
	t.Run("wrong digest", func(t *testing.T) {
		dir := t.TempDir()
		want := digest([]byte("something else"))
		_, err := fetchVerified(ctx, srv.Client(), srv.URL+"/kubelet", want, dir, p)
		if !errors.Is(err, ErrChecksum) {
			t.Fatalf("err = %v, want ErrChecksum", err)
		}
		for _, s := range []string{"kubelet", "expected " + want, "actual " + digest(content)} {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("error %q does not name %q", err, s)
			}
		}
		noFiles(t, dir)
	})
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		_, err := fetchVerified(ctx, srv.Client(), srv.URL+"/short/kubelet", digest(content), dir, p)
		if err == nil || !strings.Contains(err.Error(), "kubelet") {
			t.Fatalf("err = %v, want a truncation error naming the file", err)
		}
		noFiles(t, dir)
	})
	t.Run("404", func(t *testing.T) {
		dir := t.TempDir()
		_, err := fetchVerified(ctx, srv.Client(), srv.URL+"/nothing", digest(content), dir, p)
		if err == nil || !strings.Contains(err.Error(), "404") {
			t.Fatalf("err = %v, want HTTP 404", err)
		}
		noFiles(t, dir)
	})
	t.Run("unpinned", func(t *testing.T) {
		_, err := fetchVerified(ctx, srv.Client(), srv.URL+"/kubelet", "", t.TempDir(), p)
		if !errors.Is(err, ErrUnpinned) {
			t.Fatalf("err = %v", err)
		}
	})
}

func tarGz(t *testing.T, files map[string]string) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	writeTar(t, zw, files)
	zw.Close()
	return buf.Bytes()
}

// writeTar writes files in name order; a name ending in "/" is a directory,
// content "-> target" a symlink and "=> target" a hard link.
func writeTar(t *testing.T, w interface{ Write([]byte) (int, error) }, files map[string]string) {
	tw := tar.NewWriter(w)
	for _, name := range slices.Sorted(maps.Keys(files)) {
		content := files[name]
		hdr := &tar.Header{Name: name, Mode: 0o755, Size: int64(len(content)), Typeflag: tar.TypeReg}
		switch {
		case strings.HasSuffix(name, "/"):
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		case strings.HasPrefix(content, "-> "):
			hdr.Typeflag, hdr.Size, hdr.Linkname = tar.TypeSymlink, 0, content[3:]
		case strings.HasPrefix(content, "=> "):
			hdr.Typeflag, hdr.Size, hdr.Linkname = tar.TypeLink, 0, content[3:]
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Typeflag == tar.TypeReg {
			tw.Write([]byte(content))
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
}

// deb builds a minimal Debian package: an ar archive with data.tar.xz.
func deb(t *testing.T, files map[string]string) []byte {
	var data bytes.Buffer
	xw, err := xz.NewWriter(&data)
	if err != nil {
		t.Fatal(err)
	}
	writeTar(t, xw, files)
	xw.Close()
	var buf bytes.Buffer
	aw := ar.NewWriter(&buf)
	aw.WriteGlobalHeader()
	for _, m := range []struct {
		name string
		body []byte
	}{{"debian-binary", []byte("2.0\n")}, {"data.tar.xz", data.Bytes()}} {
		aw.WriteHeader(&ar.Header{Name: m.name, Size: int64(len(m.body)), Mode: 0o644, ModTime: time.Unix(0, 0)})
		aw.Write(m.body)
	}
	return buf.Bytes()
}

// TestEnsureRelease runs the whole release path against a local server:
// plain files, a .tar.gz and a .deb, each verified and laid out under root.
func TestEnsureRelease(t *testing.T) {
	raw := []byte("#!/bin/sh\necho runc\n")
	tgz := tarGz(t, map[string]string{"./etcd-v1/etcd": "etcd", "./etcd-v1/etcdctl": "etcdctl", "./etcd-v1/README": "x"})
	pkg := deb(t, map[string]string{"./bin/busybox": "busybox", "./usr/share/doc/x": "doc"})
	srv, hits := fileServer(t, map[string][]byte{"/runc.amd64": raw, "/etcd.tar.gz": tgz, "/bb.deb": pkg})
	v := &images.Versions{Components: []images.Component{
		{Name: "runc", Version: "v1.5.2", Module: "github.com/opencontainers/runc", Use: images.UseRootfs,
			Release: []images.ReleaseFile{{URL: srv.URL + "/runc.amd64", SHA256: digest(raw), Install: "usr/local/sbin/runc"}}},
		{Name: "etcd", Version: "v3.6.16", Module: "go.etcd.io/etcd/server/v3", Use: images.UseRootfs,
			Release: []images.ReleaseFile{{URL: srv.URL + "/etcd.tar.gz", SHA256: digest(tgz), Extract: map[string]string{
				"etcd-v1/etcd": "usr/local/bin/etcd", "etcd-v1/etcdctl": "usr/local/bin/etcdctl"}}}},
		{Name: "busybox", Version: "1:1.0-1", Package: "busybox-static", Use: images.UseImage,
			Release: []images.ReleaseFile{{URL: srv.URL + "/bb.deb", SHA256: digest(pkg), Extract: map[string]string{"bin/busybox": "bin/busybox"}}}},
	}}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	o := Options{CacheDir: t.TempDir(), Source: SourceRelease, Versions: v, HTTPClient: srv.Client()}
	set, err := Ensure(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]map[string]string{
		"runc":    {"usr/local/sbin/runc": string(raw)},
		"etcd":    {"usr/local/bin/etcd": "etcd", "usr/local/bin/etcdctl": "etcdctl"},
		"busybox": {"bin/busybox": "busybox"},
	} {
		a := set.Component(name)
		if a == nil {
			t.Fatalf("no %s in %+v", name, set)
		}
		if len(a.Files) != len(want) {
			t.Errorf("%s files %+v, want %v", name, a.Files, want)
		}
		for rel, content := range want {
			b, err := os.ReadFile(a.Path(rel))
			if err != nil || string(b) != content {
				t.Errorf("%s %s = %q, %v", name, rel, b, err)
			}
			if fi, err := os.Stat(a.Path(rel)); err == nil && fi.Mode()&0o100 == 0 {
				t.Errorf("%s %s not executable: %v", name, rel, fi.Mode())
			}
		}
	}
	if s := set.Component("busybox").Source; s != SourceDebian {
		t.Errorf("busybox source %q", s)
	}
	if s := set.Component("etcd").Source; s != SourceRelease {
		t.Errorf("etcd source %q", s)
	}

	// Second run: all cached, no HTTP at all.
	before := hits.Load()
	set, err = Ensure(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if hits.Load() != before {
		t.Error("cached run downloaded")
	}
	for _, a := range set.Artifacts {
		if !a.Cached {
			t.Errorf("%s not cached", a.Name)
		}
	}

	// A tampered pinned digest is refused and leaves no artifact behind.
	o.CacheDir = t.TempDir()
	v.Components[1].Release[0].SHA256 = digest([]byte("tampered"))
	_, err = Ensure(context.Background(), o)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), "etcd.tar.gz") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.CacheDir, "downloads", "sha256", v.Components[1].Release[0].SHA256)); err == nil {
		t.Error("mismatching download cached")
	}
	entries, _ := os.ReadDir(filepath.Join(o.CacheDir, "artifacts", "etcd"))
	if len(entries) != 0 {
		t.Errorf("etcd cache entries after a failed download: %v", entries)
	}

	// A missing archive member is an error naming it.
	v.Components[1].Release[0].SHA256 = digest(tgz)
	v.Components[1].Release[0].Extract["etcd-v1/etcdutl"] = "usr/local/bin/etcdutl"
	_, err = Ensure(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "no member etcd-v1/etcdutl") {
		t.Fatalf("err = %v", err)
	}
}

// TestUnpackDebs: `unpack` lays out whole packages (a small Debian userland):
// files, symlinks and hard links at their own paths, documentation left out;
// two packages shipping one path, or a member written through a package's
// symlink, are errors.
func TestUnpackDebs(t *testing.T) {
	libc := deb(t, map[string]string{
		"./":                                     "",
		"./lib/x86_64-linux-gnu/":                "",
		"./lib/x86_64-linux-gnu/libc.so.6":       "libc",
		"./lib64/ld-linux-x86-64.so.2":           "-> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"./usr/bin/getent":                       "getent",
		"./usr/share/doc/libc6/copyright":        "doc",
		"./usr/share/locale/de/LC_MESSAGES/x.mo": "mo",
	})
	curl := deb(t, map[string]string{
		"./usr/bin/curl":         "curl",
		"./usr/bin/curl-config":  "=> ./usr/bin/curl",
		"./usr/share/man/man1/x": "man",
	})
	srv, _ := fileServer(t, map[string][]byte{"/libc6.deb": libc, "/curl.deb": curl, "/again.deb": libc})
	comp := func(debs ...string) *images.Versions {
		c := images.Component{Name: "userland", Version: "12.12", Package: "curl", Use: images.UseImage}
		for _, d := range debs {
			b := map[string][]byte{"libc6": libc, "curl": curl, "again": libc}[d]
			c.Release = append(c.Release, images.ReleaseFile{URL: srv.URL + "/" + d + ".deb", SHA256: digest(b), Unpack: true})
		}
		return &images.Versions{Components: []images.Component{c}}
	}
	v := comp("libc6", "curl")
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	set, err := Ensure(context.Background(), Options{CacheDir: t.TempDir(), Versions: v, HTTPClient: srv.Client()})
	if err != nil {
		t.Fatal(err)
	}
	a := set.Component("userland")
	got := map[string]string{}
	for _, f := range a.Files {
		got[f.Path] = f.Link
		if f.Link == "" {
			b, _ := os.ReadFile(a.Path(f.Path))
			got[f.Path] = string(b)
		}
	}
	want := map[string]string{
		"lib/x86_64-linux-gnu/libc.so.6": "libc",
		"lib64/ld-linux-x86-64.so.2":     "/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"usr/bin/getent":                 "getent",
		"usr/bin/curl":                   "curl",
		"usr/bin/curl-config":            "curl",
	}
	if !maps.Equal(got, want) {
		t.Errorf("unpacked %v, want %v", got, want)
	}
	if a.Source != SourceDebian || a.Main != "lib/x86_64-linux-gnu/libc.so.6" {
		t.Errorf("source %s main %s", a.Source, a.Main)
	}

	// The same path from two packages.
	_, err = Ensure(context.Background(), Options{CacheDir: t.TempDir(), Versions: comp("libc6", "again"), HTTPClient: srv.Client()})
	if err == nil || !strings.Contains(err.Error(), "unpack lib/x86_64-linux-gnu/libc.so.6") {
		t.Errorf("a path shipped twice: err = %v", err)
	}
	// A member under a symlink the package made.
	root, outside := t.TempDir(), t.TempDir()
	var data bytes.Buffer
	writeTar(t, &data, map[string]string{"./usr/lib": "-> " + outside, "./usr/lib/passwd": "evil"})
	if err := unpackTar(&data, root); err == nil || !strings.Contains(err.Error(), "usr/lib is a symlink") {
		t.Errorf("writing through a symlink: err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "passwd")); err == nil {
		t.Error("a package wrote outside the root")
	}
}

func TestReleaseRefusesUnpinned(t *testing.T) {
	o := Options{CacheDir: t.TempDir(), Source: SourceRelease, Only: []string{"kubernetes", "etcd"}}
	_, err := Ensure(context.Background(), o)
	if !errors.Is(err, ErrUnpinned) {
		t.Fatalf("err = %v, want ErrUnpinned", err)
	}
	for _, s := range []string{"no pinned sha256 for kubernetes; use --source build", "no pinned sha256 for etcd; use --source build"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	noFiles(t, o.CacheDir)
}

// TestConformanceImagesFound: ConformanceImages builds exactly the images
// for the conformance suite (not the VM images' testbox) and returns their
// tarballs; with CacheOnly it finds them again, or reports them missing.
func TestConformanceImagesFound(t *testing.T) {
	pauseBin := []byte("pause")
	pkg := deb(t, map[string]string{"./bin/busybox": "busybox"})
	srv, _ := fileServer(t, map[string][]byte{"/pause": pauseBin, "/bb.deb": pkg})
	v := &images.Versions{
		Components: []images.Component{
			{Name: "pause", Version: "3.10", Use: images.UseImage,
				Release: []images.ReleaseFile{{URL: srv.URL + "/pause", SHA256: digest(pauseBin), Install: "pause"}}},
			{Name: "busybox", Version: "1:1.0-1", Package: "busybox-static", Use: images.UseImage,
				Release: []images.ReleaseFile{{URL: srv.URL + "/bb.deb", SHA256: digest(pkg), Extract: map[string]string{"bin/busybox": "bin/busybox"}}}},
			{Name: "conformance", Version: "v1.37.2", Module: "k8s.io/kubernetes", Use: images.UseHost, OnDemand: true},
		},
		Images: []images.Image{
			{Name: "testbox", Repository: "registry.kubeup.dev/testbox", From: "busybox", Tag: "1"},
			{Name: "e2e-pause", Repository: "registry.k8s.io/pause", From: "pause", Tag: "3.10.2", For: "conformance"},
			{Name: "e2e-busybox", Repository: "registry.k8s.io/e2e-test-images/busybox", From: "busybox", Tag: "1.37.0-2", For: "conformance"},
		},
	}
	if err := v.Validate(); err != nil {
		t.Fatal(err)
	}
	o := Options{CacheDir: t.TempDir(), Source: SourceRelease, Versions: v, HTTPClient: srv.Client(), Only: []string{"testbox"}}
	ctx := context.Background()

	if _, err := ConformanceImages(ctx, Options{CacheDir: o.CacheDir, Source: SourceRelease, Versions: v, CacheOnly: true}); !errors.Is(err, ErrNotCached) {
		t.Fatalf("empty cache, CacheOnly: err = %v", err)
	}
	paths, err := ConformanceImages(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range paths {
		names = append(names, filepath.Base(p))
	}
	if !slices.Equal(names, []string{"e2e-busybox.tar", "e2e-pause.tar"}) {
		t.Fatalf("paths %v", paths)
	}
	if _, err := os.Stat(filepath.Join(o.CacheDir, "images", "testbox")); err == nil {
		t.Error("the testbox image was built too")
	}
	tag, _ := name.NewTag("registry.k8s.io/pause:3.10.2")
	if _, err := tarball.ImageFromPath(paths[1], &tag); err != nil {
		t.Errorf("%s: %v", paths[1], err)
	}
	again, err := ConformanceImages(ctx, Options{CacheDir: o.CacheDir, Source: SourceRelease, Versions: v, CacheOnly: true})
	if err != nil || !slices.Equal(again, paths) {
		t.Errorf("CacheOnly: %v, %v; want %v", again, err, paths)
	}
}
