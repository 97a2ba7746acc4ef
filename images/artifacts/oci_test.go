package artifacts

import (
	"archive/tar"
	"context"
	"encoding/binary"
	"errors"
	"io"
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
		info, err := buildImage(ctx, "registry.kubeup.dev/coredns:v1.15.0", r, from, epoch, out, "img.tar", progress{w: io.Discard})
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
	entries, err := imageEntries(r, from)
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
	if _, err := imageEntries(r, from); err == nil {
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
