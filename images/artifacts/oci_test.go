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
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
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
	entries, err := imageEntries(r, imageSources{from: from}, true)
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
	if _, err := imageEntries(r, imageSources{from: from}, true); err == nil {
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
		Copy:        []copyFrom{{Component: "e2e-userland"}, {Component: "conformance", Path: "usr/local/bin/agnhost", To: "agnhost"}},
		Links:       []link{{Path: "bin/nc", Target: "nc.openbsd"}},
		Fill:        appletLinks([]string{"sh", "nc", "bash", "cat"}),
		ModuleFiles: []moduleFile{{Component: "conformance", Path: "test/images/agnhost/porter/localhost.crt", To: "localhost.crt"}},
	}
	entries, err := imageEntries(r, src, true)
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
	if _, err := imageEntries(r, src, true); err == nil || !strings.Contains(err.Error(), "conformance has no usr/local/bin/kubectl") {
		t.Errorf("missing file: err = %v", err)
	}
	r.Copy = []copyFrom{{Component: "nginx"}}
	if _, err := imageEntries(r, src, true); err == nil || !strings.Contains(err.Error(), "nginx was not ensured") {
		t.Errorf("unknown component: err = %v", err)
	}
	// Two components shipping one path is an error, as before.
	src.with["conformance"] = fakeArtifact(t, "conformance", map[string]string{"usr/bin/curl": "other curl"})
	r.Copy = []copyFrom{{Component: "e2e-userland"}, {Component: "conformance", Path: "usr/bin", To: "usr/bin"}}
	if _, err := imageEntries(r, src, true); err == nil || !strings.Contains(err.Error(), "usr/bin/curl added twice") {
		t.Errorf("duplicate: err = %v", err)
	}
}

// conformanceSources are fake components and module files for the
// conformance images' recipes.
func conformanceSources(t *testing.T) imageSources {
	t.Helper()
	busybox := fakeArtifact(t, "busybox", map[string]string{"bin/busybox": "bb"})
	src := imageSources{from: busybox,
		with: map[string]*Artifact{
			"conformance":  fakeArtifact(t, "conformance", map[string]string{"usr/local/bin/agnhost": "agnhost"}),
			"e2e-userland": fakeArtifact(t, "e2e-userland", map[string]string{"bin/bash": "bash", "bin/nc.openbsd": "nc"}),
		},
		module: map[string]string{}}
	dir := t.TempDir()
	for _, f := range []string{"localhost.crt", "localhost.key", "kitten.jpg", "data.json"} {
		src.module[f] = filepath.Join(dir, f)
		if err := os.WriteFile(src.module[f], []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// TestBuildImageLayers: the conformance images built on a Lower share its
// layers byte for byte (glibc-dns-testing's only layer is agnhost's first;
// kitten is agnhost's two layers and one of its own), each upper layer holds
// only its recipe's files, and the config is the top recipe's.
func TestBuildImageLayers(t *testing.T) {
	ctx := context.Background()
	src := conformanceSources(t)
	build := func(ref string, r imageRecipe) v1.Image {
		t.Helper()
		out := filepath.Join(t.TempDir(), "img.tar")
		info, err := buildImage(ctx, ref, r, src, 0, out, "img.tar", progress{w: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		tag, _ := name.NewTag(info.Ref)
		img, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatal(err)
		}
		return img
	}
	digests := func(img v1.Image) []string {
		t.Helper()
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, l := range layers {
			d, _ := l.Digest()
			out = append(out, d.String())
		}
		return out
	}
	files := func(l v1.Layer) []string {
		t.Helper()
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		return tarNames(rc, func(h *tar.Header) bool { return h.Typeflag != tar.TypeDir })
	}
	tools := build("registry.k8s.io/e2e-test-images/tools:1", e2eToolsRecipe())
	agnhost := build("registry.k8s.io/e2e-test-images/agnhost:1", e2eAgnhostRecipe())
	kitten := build("registry.k8s.io/e2e-test-images/kitten:1", e2ePageRecipe("kitten"))
	dt, da, dk := digests(tools), digests(agnhost), digests(kitten)
	if len(dt) != 1 || len(da) != 2 || len(dk) != 3 {
		t.Fatalf("layers: tools %d, agnhost %d, kitten %d; want 1, 2, 3", len(dt), len(da), len(dk))
	}
	if da[0] != dt[0] || !slices.Equal(dk[:2], da) {
		t.Errorf("lower layers not shared: tools %v, agnhost %v, kitten %v", dt, da, dk)
	}
	al, _ := agnhost.Layers()
	if got, want := files(al[1]), []string{"agnhost", "agnhost-2", "etc/os-release", "localhost.crt", "localhost.key"}; !slices.Equal(got, want) {
		t.Errorf("agnhost's own layer has %v, want %v", got, want)
	}
	kl, _ := kitten.Layers()
	if got, want := files(kl[2]), []string{"data.json", "kitten.jpg"}; !slices.Equal(got, want) {
		t.Errorf("kitten's own layer has %v, want %v", got, want)
	}
	if got := files(kl[0]); !slices.Contains(got, "bin/busybox") || !slices.Contains(got, "bin/bash") || slices.Contains(got, "agnhost") {
		t.Errorf("kitten's lowest layer has %v, want the tools and not agnhost", got)
	}
	cf, err := kitten.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/agnhost"}) || !slices.Equal(cf.Config.Cmd, []string{"test-webserver"}) || len(cf.History) != 3 || len(cf.RootFS.DiffIDs) != 3 {
		t.Errorf("kitten's config: %+v, %d history entries, %d diff ids", cf.Config, len(cf.History), len(cf.RootFS.DiffIDs))
	}
	// A module file a layer names but nobody found is an error, not a gap.
	delete(src.module, "data.json")
	if _, err := buildImage(ctx, "registry.k8s.io/e2e-test-images/kitten:1", e2ePageRecipe("kitten"), src, 0, filepath.Join(t.TempDir(), "x.tar"), "x.tar", progress{w: io.Discard}); err == nil || !strings.Contains(err.Error(), "data.json") {
		t.Errorf("missing module file: err = %v", err)
	}
}

// TestCombineImageArchives: images in one archive carry each layer once and
// an image under two tags once; every reference loads back with its digest;
// a second call finds the archive; a tarball that is not what its manifest
// says is refused, naming it.
func TestCombineImageArchives(t *testing.T) {
	ctx := context.Background()
	src := conformanceSources(t)
	var infos []ImageInfo
	separate := int64(0)
	for _, im := range []struct {
		ref string
		r   imageRecipe
	}{
		{"registry.k8s.io/e2e-test-images/tools:1", e2eToolsRecipe()},
		{"registry.k8s.io/e2e-test-images/agnhost:2", e2eAgnhostRecipe()},
		{"registry.k8s.io/e2e-test-images/agnhost:1", e2eAgnhostRecipe()},
		{"registry.k8s.io/e2e-test-images/kitten:1", e2ePageRecipe("kitten")},
	} {
		out := filepath.Join(t.TempDir(), "img.tar")
		info, err := buildImage(ctx, im.ref, im.r, src, 0, out, "img.tar", progress{w: io.Discard})
		if err != nil {
			t.Fatal(err)
		}
		info.Tarball = out
		infos = append(infos, *info)
		fi, _ := os.Stat(out)
		separate += fi.Size()
	}
	if infos[1].Digest != infos[2].Digest {
		t.Fatalf("one recipe, two digests: %s %s", infos[1].Digest, infos[2].Digest)
	}
	dir := t.TempDir()
	out, err := combineImageArchives(dir, "test", infos)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	blobs := tarNames(f, func(h *tar.Header) bool { return strings.HasSuffix(h.Name, ".tar.gz") })
	// tools (1), agnhost's own (1), kitten's own (1).
	if len(blobs) != 3 {
		t.Errorf("layer blobs %v, want 3 (each once)", blobs)
	}
	for _, in := range infos {
		tag, _ := name.NewTag(in.Ref)
		img, err := tarball.ImageFromPath(out, &tag)
		if err != nil {
			t.Fatalf("%s: %v", in.Ref, err)
		}
		if d, _ := img.Digest(); d.String() != in.Digest {
			t.Errorf("%s: digest %s, want %s", in.Ref, d, in.Digest)
		}
	}
	fi, _ := os.Stat(out)
	t.Logf("one archive %d bytes, four %d", fi.Size(), separate)
	if fi.Size() >= separate/2 {
		t.Errorf("combined %d bytes, separate %d: layers not shared", fi.Size(), separate)
	}
	// Found, not rewritten.
	if err := os.Chtimes(out, time.Unix(1, 0), time.Unix(1, 0)); err != nil {
		t.Fatal(err)
	}
	again, err := combineImageArchives(dir, "test", infos)
	if fi, _ := os.Stat(again); err != nil || again != out || fi.ModTime().Unix() != 1 {
		t.Errorf("second call: %s %v (first %s)", again, err, out)
	}
	// A tarball whose image is not the one its manifest names.
	bad := slices.Clone(infos)
	bad[0].Tarball = infos[3].Tarball
	bad[0].Ref = infos[3].Ref
	if _, err := combineImageArchives(t.TempDir(), "test", bad); err == nil || !strings.Contains(err.Error(), infos[3].Tarball) {
		t.Errorf("mismatched tarball: err = %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// tarNames lists the names of a tar's entries that keep selects.
func tarNames(r io.Reader, keep func(*tar.Header) bool) []string {
	var out []string
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return out
		}
		if keep(hdr) {
			out = append(out, hdr.Name)
		}
	}
}
