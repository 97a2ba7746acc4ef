package artifacts

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// fakeComponent lays out a component artifact with one binary.
func fakeComponent(t *testing.T, file, content string) *Artifact {
	t.Helper()
	dir := t.TempDir()
	a := &Artifact{Dir: dir, Manifest: Manifest{Kind: KindComponent, Name: "coredns", Version: "v1.15.0", Main: file}}
	p := a.Path(file)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := scanRoot(a.Root())
	if err != nil {
		t.Fatal(err)
	}
	a.Files = files
	return a
}

func TestBuildImage(t *testing.T) {
	ctx := context.Background()
	from := fakeComponent(t, "coredns", "not really coredns")
	r, _ := imageRecipeFor("coredns")
	build := func(epoch int64) (string, *ImageInfo) {
		out := filepath.Join(t.TempDir(), "img.tar")
		info, err := buildImage(ctx, "registry.kubeup.dev/coredns:v1.15.0", r, imageSources{from: from}, epoch, out, "img.tar", progress{w: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		return out, info
	}
	out, info := build(0)
	// Same inputs, same digest.
	if _, again := build(0); again.Digest != info.Digest {
		t.Errorf("rebuild gave %s, first %s", again.Digest, info.Digest)
	}
	// The time stamp is an input.
	if _, later := build(1700000000); later.Digest == info.Digest {
		t.Error("SOURCE_DATE_EPOCH did not change the image")
	}

	tag, _ := name.NewTag(info.Ref)
	img, err := tarball.ImageFromPath(out, &tag)
	if err != nil {
		t.Fatalf("load tarball: %v", err)
	}
	if d, _ := img.Digest(); d.String() != info.Digest {
		t.Errorf("loaded digest %s, built %s", d, info.Digest)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" || !cf.Created.Time.Equal(time.Unix(0, 0)) {
		t.Errorf("config os/arch/created = %s/%s/%v", cf.OS, cf.Architecture, cf.Created)
	}
	if strings.Join(cf.Config.Entrypoint, " ") != "/coredns" || cf.Config.User != "65532:65532" {
		t.Errorf("config %+v", cf.Config)
	}
	if _, ok := cf.Config.ExposedPorts["53/udp"]; !ok {
		t.Errorf("ports %v", cf.Config.ExposedPorts)
	}

	// The layer: fixed owners and times, the file capability on /coredns.
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	seen := false
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if hdr.Uid != 0 || hdr.Gid != 0 || !hdr.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d mtime %v", hdr.Name, hdr.Uid, hdr.Gid, hdr.ModTime)
		}
		if hdr.Name == "coredns" {
			seen = true
			capData := hdr.PAXRecords["SCHILY.xattr.security.capability"]
			if len(capData) != 20 || binary.LittleEndian.Uint32([]byte(capData[4:]))&(1<<10) == 0 {
				t.Errorf("coredns capability xattr %x", capData)
			}
		}
	}
	if !seen {
		t.Error("no /coredns in the layer")
	}
}

func TestImageEntries(t *testing.T) {
	from := fakeComponent(t, "bin/busybox", "bb")
	r, _ := imageRecipeFor("testbox")
	entries, err := imageEntries(r, imageSources{from: from})
	if err != nil {
		t.Fatal(err)
	}
	byPath := map[string]layerEntry{}
	var order []string
	for _, e := range entries {
		byPath[e.path] = e
		order = append(order, e.path)
	}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Fatalf("entries not sorted: %v", order)
		}
	}
	if e := byPath["bin/sh"]; e.link != "busybox" {
		t.Errorf("bin/sh = %+v", e)
	}
	if e := byPath["bin"]; !e.dir {
		t.Errorf("parent dir bin missing: %+v", e)
	}
	if e := byPath["tmp"]; !e.dir || e.mode&os.ModeSticky == 0 || e.mode.Perm() != 0o777 {
		t.Errorf("tmp = %+v", e)
	}
	if e := byPath["etc/passwd"]; !strings.Contains(string(e.data), "root:x:0:0") {
		t.Errorf("passwd = %q", e.data)
	}
	// Entries that collide are refused.
	r.Links = append(r.Links, link{Path: "bin/busybox", Target: "x"})
	if _, err := imageEntries(r, imageSources{from: from}); err == nil {
		t.Error("duplicate entry accepted")
	}
}

func TestFileCapability(t *testing.T) {
	v, err := fileCapability([]string{"cap_net_bind_service"})
	if err != nil {
		t.Fatal(err)
	}
	// What `setcap cap_net_bind_service=+ep` writes (getfattr -e hex):
	// 0x0100000200040000000000000000000000000000.
	want := "\x01\x00\x00\x02\x00\x04\x00\x00" + strings.Repeat("\x00", 12)
	if v != want {
		t.Errorf("xattr %x, want %x", v, want)
	}
	if _, err := fileCapability([]string{"cap_sys_admin_typo"}); err == nil {
		t.Error("unknown capability accepted")
	}
}

// fakeArtifact lays out a component artifact: path -> content, or "-> target"
// for a symlink.
func fakeArtifact(t *testing.T, name string, files map[string]string) *Artifact {
	t.Helper()
	a := &Artifact{Dir: t.TempDir(), Manifest: Manifest{Kind: KindComponent, Name: name, Version: "1"}}
	for p, content := range files {
		dst := a.Path(p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		var err error
		if target, ok := strings.CutPrefix(content, "-> "); ok {
			err = os.Symlink(target, dst)
		} else {
			err = os.WriteFile(dst, []byte(content), 0o755)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	files2, err := scanRoot(a.Root())
	if err != nil {
		t.Fatal(err)
	}
	a.Files = files2
	return a
}

// TestImageEntriesFromSeveralComponents: an image made of a base component,
// files copied from further ones (one file, or a whole root), module source
// files, and fill-in links only where nothing else is.
func TestImageEntriesFromSeveralComponents(t *testing.T) {
	busybox := fakeArtifact(t, "busybox", map[string]string{"bin/busybox": "bb"})
	suite := fakeArtifact(t, "conformance", map[string]string{"usr/local/bin/agnhost": "agnhost", "usr/local/bin/e2e.test": "suite"})
	userland := fakeArtifact(t, "e2e-userland", map[string]string{
		"bin/bash": "bash", "bin/nc.openbsd": "nc", "usr/bin/curl": "curl",
		"lib64/ld-linux-x86-64.so.2": "-> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
	})
	crt := filepath.Join(t.TempDir(), "localhost.crt")
	os.WriteFile(crt, []byte("cert"), 0o600)
	src := imageSources{from: busybox, with: map[string]*Artifact{"conformance": suite, "e2e-userland": userland},
		module: map[string]string{"localhost.crt": crt}}
	r := imageRecipe{
		Copy:  []copyFrom{{Component: "e2e-userland"}, {Component: "conformance", Path: "usr/local/bin/agnhost", To: "agnhost"}},
		Links: []link{{Path: "bin/nc", Target: "nc.openbsd"}},
		Fill:  appletLinks([]string{"sh", "nc", "bash", "cat"}),
	}
	entries, err := imageEntries(r, src)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, e := range entries {
		switch {
		case e.dir:
			got[e.path] = "dir"
		case e.link != "":
			got[e.path] = "-> " + e.link
		default:
			got[e.path] = e.src
		}
	}
	want := map[string]string{
		"bin": "dir", "usr": "dir", "usr/bin": "dir", "lib64": "dir",
		"bin/busybox":                busybox.Path("bin/busybox"),
		"agnhost":                    suite.Path("usr/local/bin/agnhost"),
		"bin/bash":                   userland.Path("bin/bash"),
		"bin/nc.openbsd":             userland.Path("bin/nc.openbsd"),
		"usr/bin/curl":               userland.Path("usr/bin/curl"),
		"lib64/ld-linux-x86-64.so.2": "-> /lib/x86_64-linux-gnu/ld-linux-x86-64.so.2",
		"localhost.crt":              crt,
		// The recipe's link wins over the applet; bash stays Debian's.
		"bin/nc":  "-> nc.openbsd",
		"bin/sh":  "-> busybox",
		"bin/cat": "-> busybox",
	}
	if !maps.Equal(got, want) {
		t.Errorf("entries:\n got %v\nwant %v", got, want)
	}

	// Copying what a component does not have, or from one not given, fails.
	r.Copy = append(r.Copy, copyFrom{Component: "conformance", Path: "usr/local/bin/kubectl", To: "kubectl"})
	if _, err := imageEntries(r, src); err == nil || !strings.Contains(err.Error(), "conformance has no usr/local/bin/kubectl") {
		t.Errorf("missing file: err = %v", err)
	}
	r.Copy = []copyFrom{{Component: "nginx"}}
	if _, err := imageEntries(r, src); err == nil || !strings.Contains(err.Error(), "nginx was not ensured") {
		t.Errorf("unknown component: err = %v", err)
	}
	// Two components shipping one path is an error, as before.
	src.with["conformance"] = fakeArtifact(t, "conformance", map[string]string{"usr/bin/curl": "other curl"})
	r.Copy = []copyFrom{{Component: "e2e-userland"}, {Component: "conformance", Path: "usr/bin", To: "usr/bin"}}
	if _, err := imageEntries(r, src); err == nil || !strings.Contains(err.Error(), "usr/bin/curl added twice") {
		t.Errorf("duplicate: err = %v", err)
	}
}
