package artifacts

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// layerEntry is one entry of an image layer.
type layerEntry struct {
	path string // relative, no leading slash
	mode fs.FileMode
	// exactly one of: dir, link != "", src != "" (file on disk), data
	dir   bool
	link  string
	src   string
	data  []byte
	xattr map[string]string
}

// imageSources are the files an image is made of besides its recipe's own.
type imageSources struct {
	// from is the component whose whole root is the image's base.
	from *Artifact
	// with are further components by name, for the recipe's Copy.
	with map[string]*Artifact
	// module maps image paths to files of a module's source (ModuleFiles).
	module map[string]string
}

// buildImage makes a linux/amd64 image from a component's files plus the
// recipe's additions, a layer per recipe layer (one unless it has a Lower),
// and writes it as a docker-archive tarball (tagged ref) to out. Everything
// that could vary between runs is fixed: owners 0:0, mtimes and created
// times = created, entries sorted, gzip without a header time, so equal
// inputs give an equal image digest (and equal lower recipes equal layers).
func buildImage(ctx context.Context, ref string, r imageRecipe, src imageSources, created int64, out, relOut string, p progress) (*ImageInfo, error) {
	from := src.from
	if from == nil {
		return nil, fmt.Errorf("image %s: its component was not ensured", ref)
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return nil, fmt.Errorf("image reference: %w", err)
	}
	when := time.Unix(created, 0).UTC()
	var layers []v1.Layer
	for i, lr := range r.layers() {
		entries, err := imageEntries(lr, src, i == 0)
		if err != nil {
			return nil, err
		}
		layerTar, err := writeLayer(entries, when)
		if err != nil {
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
			return io.NopCloser(bytes.NewReader(layerTar)), nil
		}, tarball.WithCompressionLevel(gzip.BestCompression), tarball.WithCompressedCaching)
		if err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
		layers = append(layers, layer)
	}
	cfg := v1.Config{Entrypoint: r.Entrypoint, Cmd: r.Cmd, User: r.User, Env: r.Env}
	if len(r.ExposedPorts) > 0 {
		cfg.ExposedPorts = map[string]struct{}{}
		for _, port := range r.ExposedPorts {
			cfg.ExposedPorts[port] = struct{}{}
		}
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: when},
		Config:       cfg,
	})
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	for _, layer := range layers {
		img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{
			Created:   v1.Time{Time: when},
			CreatedBy: fmt.Sprintf("kubeup artifacts: %s %s", from.Name, from.Version),
		}})
		if err != nil {
			return nil, fmt.Errorf("image layer: %w", err)
		}
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("image digest: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return nil, err
	}
	if err := tarball.Write(tag, img, f); err != nil {
		f.Close()
		return nil, fmt.Errorf("write image tarball: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	p.printf("image %s %s", ref, digest)
	return &ImageInfo{Ref: ref, Digest: digest.String(), Tarball: relOut}, nil
}

// imageEntries lists a layer: the component's files (lowest, the image's
// lowest layer), the files the recipe copies from further components and
// modules, the recipe's links, files and directories, the fill-in links
// where nothing else is, and every parent directory, sorted by path.
func imageEntries(r imageRecipe, src imageSources, lowest bool) ([]layerEntry, error) {
	byPath := map[string]layerEntry{}
	add := func(e layerEntry) error {
		if _, dup := byPath[e.path]; dup {
			return fmt.Errorf("image layer: %s added twice", e.path)
		}
		byPath[e.path] = e
		return nil
	}
	addFile := func(a *Artifact, f File, to string) error {
		e := layerEntry{path: to, mode: f.Mode.Perm()}
		if f.Link != "" {
			e.link = f.Link
		} else {
			e.src = a.Path(f.Path)
		}
		return add(e)
	}
	if lowest {
		for _, f := range src.from.Files {
			if err := addFile(src.from, f, f.Path); err != nil {
				return nil, err
			}
		}
	}
	for _, c := range r.Copy {
		a := src.with[c.Component]
		if a == nil {
			return nil, fmt.Errorf("image layer: component %s was not ensured", c.Component)
		}
		n := 0
		for _, f := range a.Files {
			rel, ok := underPath(f.Path, c.Path)
			if !ok {
				continue
			}
			if err := addFile(a, f, path.Join(c.To, rel)); err != nil {
				return nil, err
			}
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("image layer: component %s has no %s", c.Component, c.Path)
		}
	}
	for _, f := range r.ModuleFiles {
		file, ok := src.module[f.To]
		if !ok {
			return nil, fmt.Errorf("image layer: module file %s of %s was not found", f.Path, f.Component)
		}
		if err := add(layerEntry{path: f.To, mode: 0o644, src: file}); err != nil {
			return nil, err
		}
	}
	for _, l := range r.Links {
		if err := add(layerEntry{path: l.Path, mode: 0o777, link: l.Target}); err != nil {
			return nil, err
		}
	}
	for p, content := range r.Files {
		if err := add(layerEntry{path: p, mode: 0o644, data: []byte(content)}); err != nil {
			return nil, err
		}
	}
	for p, mode := range r.Dirs {
		if err := add(layerEntry{path: p, mode: fs.FileMode(mode&0o777) | modeBits(mode), dir: true}); err != nil {
			return nil, err
		}
	}
	for _, l := range r.Fill {
		if _, taken := byPath[l.Path]; !taken {
			byPath[l.Path] = layerEntry{path: l.Path, mode: 0o777, link: l.Target}
		}
	}
	for p, caps := range r.Capabilities {
		e, ok := byPath[p]
		if !ok || e.dir || e.link != "" {
			return nil, fmt.Errorf("image layer: capabilities for %s, which is not a file in the image", p)
		}
		v, err := fileCapability(caps)
		if err != nil {
			return nil, fmt.Errorf("image layer: %s: %w", p, err)
		}
		e.xattr = map[string]string{"security.capability": v}
		byPath[p] = e
	}
	for p := range byPath {
		for d := path.Dir(p); d != "."; d = path.Dir(d) {
			if _, ok := byPath[d]; !ok {
				byPath[d] = layerEntry{path: d, mode: 0o755, dir: true}
			}
		}
	}
	var entries []layerEntry
	for _, p := range slices.Sorted(maps.Keys(byPath)) {
		entries = append(entries, byPath[p])
	}
	return entries, nil
}

// underPath reports whether p is dir or under it ("" is the whole root), and
// p relative to dir ("." for dir itself).
func underPath(p, dir string) (string, bool) {
	switch {
	case dir == "":
		return p, true
	case p == dir:
		return ".", true
	case strings.HasPrefix(p, dir+"/"):
		return p[len(dir)+1:], true
	}
	return "", false
}

// modeBits turns the sticky/setuid/setgid bits of a Unix mode into fs bits.
func modeBits(mode int64) fs.FileMode {
	var m fs.FileMode
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	return m
}

func writeLayer(entries []layerEntry, when time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.path, ModTime: when, Mode: int64(e.mode.Perm())}
		if e.mode&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		var body io.Reader
		switch {
		case e.dir:
			hdr.Typeflag, hdr.Name = tar.TypeDir, e.path+"/"
		case e.link != "":
			hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, e.link
		case e.src != "":
			f, err := os.Open(e.src)
			if err != nil {
				return nil, fmt.Errorf("image layer: %w", err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				return nil, fmt.Errorf("image layer: %w", err)
			}
			hdr.Typeflag, hdr.Size, body = tar.TypeReg, fi.Size(), f
		default:
			hdr.Typeflag, hdr.Size, body = tar.TypeReg, int64(len(e.data)), bytes.NewReader(e.data)
		}
		if len(e.xattr) > 0 {
			hdr.Format = tar.FormatPAX
			hdr.PAXRecords = map[string]string{}
			for k, v := range e.xattr {
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("image layer %s: %w", e.path, err)
		}
		if body != nil {
			if _, err := io.Copy(tw, body); err != nil {
				return nil, fmt.Errorf("image layer %s: %w", e.path, err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return buf.Bytes(), nil
}

// capabilityBits are the Linux capability numbers kubeup's images use.
var capabilityBits = map[string]uint{
	"cap_net_bind_service": 10,
	"cap_net_raw":          13,
}

// fileCapability encodes "setcap <caps>=+ep" as the security.capability xattr
// (struct vfs_cap_data, revision 2, little endian).
func fileCapability(caps []string) (string, error) {
	var permitted uint64
	for _, c := range caps {
		bit, ok := capabilityBits[c]
		if !ok {
			return "", fmt.Errorf("unknown capability %q", c)
		}
		permitted |= 1 << bit
	}
	const revision2, effective = 0x02000000, 0x000001
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], revision2|effective)
	binary.LittleEndian.PutUint32(b[4:], uint32(permitted))      // data[0].permitted
	binary.LittleEndian.PutUint32(b[12:], uint32(permitted>>32)) // data[1].permitted
	return string(b), nil
}
