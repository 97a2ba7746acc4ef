package artifacts

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"kubeup.dev/kubeup/images"
	"kubeup.dev/kubeup/images/internal/heartbeat"
)

// Source says where component files come from.
type Source string

const (
	// SourceBuild builds components from their pinned Go modules.
	SourceBuild Source = "build"
	// SourceRelease downloads upstream's release files and checks them against
	// the pinned sha256 digests.
	SourceRelease Source = "release"
	// SourceDebian marks files taken from a pinned Debian package (only in
	// Artifact.Source; choose it with either option).
	SourceDebian Source = "debian"
)

// ParseSource accepts "build" or "release".
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case SourceBuild, SourceRelease:
		return Source(s), nil
	}
	return "", fmt.Errorf("unknown source %q (want build or release)", s)
}

// Sentinel errors for callers to test with errors.Is.
var (
	// ErrNotCached: Options.CacheOnly was set and an artifact is not cached.
	ErrNotCached = errors.New("artifact not cached")
	// ErrUnpinned: --source release for a component without pinned digests.
	ErrUnpinned = errors.New("no pinned sha256")
	// ErrChecksum: a download did not match its pinned digest.
	ErrChecksum = errors.New("sha256 mismatch")
)

// Options configure Ensure. The zero value builds everything into the
// default cache, finding the wrapper modules from the working directory.
type Options struct {
	// CacheDir is the cache root; default DefaultCacheDir().
	CacheDir string
	// SrcDir is the kubeup checkout (the directory holding images/modules);
	// default FindSrcDir(working directory). Needed only for builds.
	SrcDir string
	// Source is SourceBuild (default) or SourceRelease. Components without a
	// release (pause) are always built; those without a Go module (busybox)
	// always downloaded.
	Source Source
	// Only limits the run to these components or images (and what they are
	// built from). Empty means all.
	Only []string
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
	// SourceDateEpoch is the time stamped into builds and images (seconds since
	// 1970; SOURCE_DATE_EPOCH).
	SourceDateEpoch int64
	// CacheOnly makes Ensure fail with ErrNotCached instead of building.
	CacheOnly bool

	// Versions defaults to images.Pinned().
	Versions *images.Versions
	// HTTPClient is used for downloads; default http.DefaultClient.
	HTTPClient *http.Client
	// Go is the go command; default "go" from $PATH.
	Go string
}

// Set is what Ensure produced, in build order (components, then images).
type Set struct {
	Artifacts []*Artifact `json:"artifacts"`
}

// Component returns the component artifact called name, or nil.
func (s *Set) Component(name string) *Artifact { return s.get(KindComponent, name) }

// Image returns the container image artifact called name, or nil.
func (s *Set) Image(name string) *Artifact { return s.get(KindImage, name) }

func (s *Set) get(kind Kind, name string) *Artifact {
	for _, a := range s.Artifacts {
		if a.Kind == kind && a.Name == name {
			return a
		}
	}
	return nil
}

// Kind tells components (files from versions.yaml's components) from
// container images; a component and an image may share a name (pause).
type Kind string

const (
	KindComponent Kind = "component"
	KindImage     Kind = "image"
)

// Artifact is one cached component or container image.
type Artifact struct {
	Manifest
	// Dir is the cache entry; files are under Dir/root.
	Dir string `json:"dir"`
	// Cached reports that this run found the artifact in the cache.
	Cached bool `json:"cached"`
}

// Root is the directory holding the artifact's files as they install.
func (a *Artifact) Root() string { return filepath.Join(a.Dir, "root") }

// Path is the absolute path of the installed file rel (e.g. "usr/local/bin/kubelet").
func (a *Artifact) Path(rel string) string { return filepath.Join(a.Root(), filepath.FromSlash(rel)) }

// Manifest is the manifest.json of a cache entry.
type Manifest struct {
	Kind    Kind       `json:"kind"`
	Name    string     `json:"name"`
	Version string     `json:"version"`
	Source  Source     `json:"source"`
	Use     images.Use `json:"use"`
	Key     string     `json:"key"`
	// Main is the principal file (for the summary table).
	Main  string `json:"main"`
	Files []File `json:"files"`
	// Image is set for container images.
	Image *ImageInfo `json:"image,omitempty"`
	// GoVersion built it (empty for downloads).
	GoVersion     string  `json:"goVersion,omitempty"`
	BuildSeconds  float64 `json:"buildSeconds"`
	SchemaVersion int     `json:"schemaVersion"`
}

// File is one installed file or symlink, its path relative to the root.
type File struct {
	Path   string      `json:"path"`
	Mode   fs.FileMode `json:"mode"`
	Size   int64       `json:"size"`
	SHA256 string      `json:"sha256,omitempty"`
	// Link is the symlink target for symlinks.
	Link string `json:"link,omitempty"`
}

// ImageInfo describes a container image artifact.
type ImageInfo struct {
	Ref string `json:"ref"`
	// Digest is the image manifest digest as built (sha256:...).
	Digest string `json:"digest"`
	// Tarball is the docker-archive tarball's path relative to the root.
	Tarball string `json:"tarball"`
}

// TarballPath is the absolute path of an image artifact's tarball.
func (a *Artifact) TarballPath() string {
	if a.Image == nil {
		return ""
	}
	return a.Path(a.Image.Tarball)
}

// TotalSize adds up the sizes of the regular files.
func (m *Manifest) TotalSize() int64 {
	var n int64
	for _, f := range m.Files {
		if f.Link == "" {
			n += f.Size
		}
	}
	return n
}

// MainFile returns the entry of the main file.
func (m *Manifest) MainFile() File {
	for _, f := range m.Files {
		if f.Path == m.Main {
			return f
		}
	}
	return File{}
}

// DefaultCacheDir is $KUBEUP_CACHE_DIR, else <user cache dir>/kubeup.
func DefaultCacheDir() (string, error) {
	if d := os.Getenv("KUBEUP_CACHE_DIR"); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find cache directory (set KUBEUP_CACHE_DIR): %w", err)
	}
	return filepath.Join(d, "kubeup"), nil
}

// SourceDateEpochFromEnv reads $SOURCE_DATE_EPOCH (0 when unset).
func SourceDateEpochFromEnv() (int64, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("SOURCE_DATE_EPOCH=%q is not a number of seconds", s)
	}
	return n, nil
}

// FindSrcDir walks up from start to the directory that has images/modules.
func FindSrcDir(start string) (string, error) {
	dir, err := filepath.Abs(start)
	if err != nil {
		return "", fmt.Errorf("find kubeup source: %w", err)
	}
	for {
		if fi, err := os.Stat(filepath.Join(dir, "images", "modules")); err == nil && fi.IsDir() {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no images/modules in %s or any parent: run from a kubeup checkout or pass --src", start)
		}
		dir = parent
	}
}

// Ensure makes every selected artifact present in the cache, building or
// downloading only what is missing, and returns where they are.
func Ensure(ctx context.Context, o Options) (*Set, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	plans, err := planAll(ctx, &o)
	if err != nil {
		return nil, err
	}
	return ensurePlans(ctx, &o, plans)
}

func (o *Options) defaults() error {
	if o.Versions == nil {
		o.Versions = images.Pinned()
	}
	if o.Source == "" {
		o.Source = SourceBuild
	}
	if _, err := ParseSource(string(o.Source)); err != nil {
		return err
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.HTTPClient == nil {
		o.HTTPClient = http.DefaultClient
	}
	if o.Go == "" {
		o.Go = "go"
	}
	if o.CacheDir == "" {
		d, err := DefaultCacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = d
	}
	var err error
	if o.CacheDir, err = filepath.Abs(o.CacheDir); err != nil {
		return fmt.Errorf("cache dir: %w", err)
	}
	return nil
}

// selected returns the component and image names to ensure, in build order
// (components first, as images are made from them), with what images need.
// Naming an on-demand component (conformance) selects the images for it too.
func selected(v *images.Versions, only []string) (components, imgs []string, err error) {
	// A component and an image may share a name (pause): kept apart.
	want, wantImg := map[string]bool{}, map[string]bool{}
	wantImage := func(im images.Image) {
		wantImg[im.Name] = true
		for _, c := range im.Components() {
			want[c] = true
		}
	}
	var unknown []string
	for _, n := range only {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		c, isComp := v.Component(n)
		im, isImage := v.Image(n)
		switch {
		case isImage:
			wantImage(im)
		case isComp:
			want[n] = true
			if c.OnDemand {
				for _, im := range v.Images {
					if im.For == n {
						wantImage(im)
					}
				}
			}
		default:
			unknown = append(unknown, n)
		}
	}
	if len(unknown) > 0 {
		var all []string
		for _, c := range v.Components {
			all = append(all, c.Name)
		}
		for _, i := range v.Images {
			if !slices.Contains(all, i.Name) {
				all = append(all, i.Name)
			}
		}
		return nil, nil, fmt.Errorf("unknown artifact %s (have %s)", strings.Join(unknown, ", "), strings.Join(all, ", "))
	}
	all := len(want) == 0 && len(wantImg) == 0
	for _, c := range v.Components {
		// On-demand tools (the conformance suite) only when named.
		if (all && !c.OnDemand) || want[c.Name] {
			components = append(components, c.Name)
		}
	}
	for _, i := range v.Images {
		if (all && !i.OnDemand()) || wantImg[i.Name] {
			imgs = append(imgs, i.Name)
		}
	}
	return components, imgs, nil
}

// progress writes "name: message" lines.
type progress struct {
	w    io.Writer
	name string
}

func (p progress) printf(format string, args ...any) {
	fmt.Fprintf(p.w, "%-16s %s\n", p.name+":", fmt.Sprintf(format, args...))
}

// tick prints "<what>, <elapsed> elapsed" every interval until stop is called.
func (p progress) tick(what string, interval time.Duration) (stop func()) {
	return heartbeat.Start(context.Background(), interval, time.Now(), func(elapsed time.Duration) {
		p.printf("%s, %s elapsed", what, elapsed.Round(time.Second))
	})
}

// ConformanceSuite is the on-demand component of upstream's conformance
// suite; the images `for` it in versions.yaml are the ones its specs run.
const ConformanceSuite = "conformance"

// ConformanceImages ensures the container images the conformance suite's
// specs run (registry.k8s.io/e2e-test-images/agnhost:2.66.1 and the rest of
// versions.yaml's images `for: conformance`, with the suite itself, whose
// agnhost they hold) and returns the paths of their docker-archive tarballs,
// which `ctr images import` takes, sorted. o.Only is ignored; with
// o.CacheOnly it only finds them (ErrNotCached when one is missing: build
// them with `kubeup artifacts --only conformance`).
func ConformanceImages(ctx context.Context, o Options) ([]string, error) {
	found, err := conformanceImageArtifacts(ctx, &o)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, a := range found {
		paths = append(paths, a.TarballPath())
	}
	slices.Sort(paths)
	return paths, nil
}

// conformanceImageArtifacts ensures (or with o.CacheOnly finds) the
// conformance images, sorted by name; o gets its defaults (its CacheDir).
func conformanceImageArtifacts(ctx context.Context, o *Options) ([]*Artifact, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	eo := *o
	eo.Only = nil
	for _, im := range o.Versions.Images {
		if im.For == ConformanceSuite {
			eo.Only = append(eo.Only, im.Name)
		}
	}
	if len(eo.Only) == 0 {
		return nil, fmt.Errorf("images/versions.yaml has no image for %s", ConformanceSuite)
	}
	set, err := Ensure(ctx, eo)
	if err != nil {
		return nil, err
	}
	var found []*Artifact
	for _, a := range set.Artifacts {
		if a.Kind == KindImage {
			found = append(found, a)
		}
	}
	slices.SortFunc(found, func(a, b *Artifact) int { return strings.Compare(a.Name, b.Name) })
	return found, nil
}

// ConformanceArchive is ConformanceImages as one docker archive, which is
// what `make conformance` loads: a layer several images share (agnhost's
// two under kitten and nautilus, the tools layer under glibc-dns-testing,
// the whole agnhost image under its second tag) is in it once, so each
// machine receives and unpacks it once. The archive is kept in the cache,
// named by the images' references and digests, and written only when
// missing (to a temporary file, then renamed).
func ConformanceArchive(ctx context.Context, o Options) (string, error) {
	found, err := conformanceImageArtifacts(ctx, &o)
	if err != nil {
		return "", err
	}
	var infos []ImageInfo
	for _, a := range found {
		infos = append(infos, ImageInfo{Ref: a.Image.Ref, Digest: a.Image.Digest, Tarball: a.TarballPath()})
	}
	return combineImageArchives(filepath.Join(o.CacheDir, "archives"), "conformance", infos)
}

// combineImageArchives writes the images (each read from its docker archive,
// Tarball an absolute path) as one docker archive under dir, named prefix-
// and a digest of their references and digests, unless it is there, and
// returns its path. Images with one digest are one image with several tags;
// layers are written once (go-containerregistry's MultiRefWrite).
func combineImageArchives(dir, prefix string, infos []ImageInfo) (string, error) {
	h := sha256.New()
	for _, in := range infos {
		fmt.Fprintf(h, "%s %s\n", in.Ref, in.Digest)
	}
	out := filepath.Join(dir, fmt.Sprintf("%s-%x.tar", prefix, h.Sum(nil)[:8]))
	if _, err := os.Stat(out); err == nil {
		return out, nil
	}
	byDigest := map[string]v1.Image{}
	refs := map[name.Reference]v1.Image{}
	for _, in := range infos {
		tag, err := name.NewTag(in.Ref, name.StrictValidation)
		if err != nil {
			return "", fmt.Errorf("image %s: %w", in.Ref, err)
		}
		img, ok := byDigest[in.Digest]
		if !ok {
			if img, err = tarball.ImageFromPath(in.Tarball, &tag); err != nil {
				return "", fmt.Errorf("image %s: %s: %w", in.Ref, in.Tarball, err)
			}
			d, err := img.Digest()
			if err != nil {
				return "", fmt.Errorf("image %s: %s: %w", in.Ref, in.Tarball, err)
			}
			if d.String() != in.Digest {
				return "", fmt.Errorf("image %s: %s holds %s, its manifest says %s (rebuild it with `kubeup artifacts`)", in.Ref, in.Tarball, d, in.Digest)
			}
			byDigest[in.Digest] = img
		}
		refs[tag] = img
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.CreateTemp(dir, "."+prefix+"-*.tar")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name())
	if err := tarball.MultiRefWrite(refs, tmp); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write %s: %w", out, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return "", err
	}
	return out, nil
}

// ErrUnknownImage: a name that is neither an image of versions.yaml (by
// its name or its repository:tag) nor the conformance suite.
var ErrUnknownImage = errors.New("not an image kubeup builds")

// FindImage resolves what a user names an image kubeup builds to the
// name ImageArchive takes: an image's name in versions.yaml ("coredns",
// "e2e-agnhost"), its reference ("registry.k8s.io/e2e-test-images/agnhost:2.66.1"),
// or ConformanceSuite (every image the suite runs, as one archive).
// Anything else is ErrUnknownImage, listing the names there are.
func FindImage(v *images.Versions, name string) (string, error) {
	if v == nil {
		v = images.Pinned()
	}
	if name == ConformanceSuite {
		return name, nil
	}
	var names []string
	for _, im := range v.Images {
		if im.Name == name || im.Ref() == name {
			return im.Name, nil
		}
		names = append(names, im.Name)
	}
	return "", fmt.Errorf("%w: %q (kubeup builds %s, or %s for the conformance suite's images as one archive; by name or by repository:tag)",
		ErrUnknownImage, name, strings.Join(names, ", "), ConformanceSuite)
}

// ImageArchive ensures the image FindImage named (building it into the
// cache when missing, unless o.CacheOnly) and returns its docker archive:
// the image's tarball, or for ConformanceSuite the suite's one archive.
func ImageArchive(ctx context.Context, o Options, name string) (string, error) {
	if name == ConformanceSuite {
		return ConformanceArchive(ctx, o)
	}
	if err := o.defaults(); err != nil {
		return "", err
	}
	if _, err := FindImage(o.Versions, name); err != nil {
		return "", err
	}
	o.Only = []string{name}
	set, err := Ensure(ctx, o)
	if err != nil {
		return "", err
	}
	for _, a := range set.Artifacts {
		if a.Kind == KindImage && a.Name == name && a.TarballPath() != "" {
			return a.TarballPath(), nil
		}
	}
	return "", fmt.Errorf("image %s: no archive after building it", name)
}
