package images

import (
	_ "embed"
	"errors"
	"fmt"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"golang.org/x/mod/semver"
	"sigs.k8s.io/yaml"
)

//go:embed versions.yaml
var versionsYAML []byte

// Use says where a component's files end up.
type Use string

const (
	// UseRootfs components are installed into the VM images.
	UseRootfs Use = "rootfs"
	// UseHost components are tools kubeup runs on the host; never in images.
	UseHost Use = "host"
	// UseImage components are only inputs of container images.
	UseImage Use = "image"
)

// Versions is the parsed versions.yaml.
type Versions struct {
	Components []Component `json:"components"`
	Images     []Image     `json:"images"`
}

// Component is one pinned upstream component.
type Component struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Module is the Go module built for --source build (wrapper module
	// images/modules/<Name>). Empty for components built from kubeup's own
	// code (pause) or taken from a Debian package.
	Module string `json:"module,omitempty"`
	// Package is the Debian package the release file is, if any.
	Package string `json:"package,omitempty"`
	Use     Use    `json:"use"`
	// OnDemand components are built only when asked for by name (`kubeup
	// artifacts --only NAME`) or for an on-demand image made from them, never
	// by a plain `kubeup artifacts` (make deps) or an image build: the
	// conformance suite costs a long build that most machines never need, and
	// so do the inputs of the images only it runs.
	OnDemand bool          `json:"onDemand,omitempty"`
	Release  []ReleaseFile `json:"release,omitempty"`
}

// ReleaseFile is one prebuilt upstream file.
type ReleaseFile struct {
	URL string `json:"url"`
	// SHA256 is the pinned digest (lowercase hex) or empty when unknown.
	SHA256 string `json:"sha256"`
	// Install is where a plain file lands, relative to the component's root.
	Install string `json:"install,omitempty"`
	// Extract maps archive members to where they land (for .tar.gz, .tgz, .deb).
	Extract map[string]string `json:"extract,omitempty"`
	// Unpack lays out every file and symlink of a .deb's data archive at its
	// own path under the component's root (documentation left out): the
	// packages of a small Debian userland for a container image.
	Unpack bool `json:"unpack,omitempty"`
}

// Image is a container image kubeup builds from a component's files.
type Image struct {
	Name       string `json:"name"`
	Repository string `json:"repository"`
	// From names the component whose files make up the image.
	From string `json:"from"`
	// Tag is derived from From's version by Load (see TagFor) unless set in
	// the file (where upstream's version is not its Go module's).
	Tag string `json:"tag,omitempty"`
	// With names further components the image's recipe takes files from
	// (the conformance suite's agnhost, a Debian userland); they are ensured
	// before the image and their keys are part of its key.
	With []string `json:"with,omitempty"`
	// For names the on-demand component whose runs need this image (the
	// conformance suite): such an image is built only with that component
	// (`kubeup artifacts --only conformance`) or when named itself, never by
	// a plain `kubeup artifacts` nor preloaded into the VM images. Its
	// components may be on demand too.
	For string `json:"for,omitempty"`
}

// OnDemand reports whether the image is built only on demand (For is set).
func (i Image) OnDemand() bool { return i.For != "" }

// Components are the components the image is made from: From, then With.
func (i Image) Components() []string { return append([]string{i.From}, i.With...) }

// Ref is the image reference, repository:tag.
func (i Image) Ref() string { return i.Repository + ":" + i.Tag }

// Component returns the component called name.
func (v *Versions) Component(name string) (Component, bool) {
	for _, c := range v.Components {
		if c.Name == name {
			return c, true
		}
	}
	return Component{}, false
}

// Image returns the image called name.
func (v *Versions) Image(name string) (Image, bool) {
	for _, i := range v.Images {
		if i.Name == name {
			return i, true
		}
	}
	return Image{}, false
}

// Pinned returns a fresh copy of the embedded versions.yaml. It panics if
// that file is invalid, which TestPinned rules out for every build of kubeup.
func Pinned() *Versions {
	v, err := Load(versionsYAML)
	if err != nil {
		panic(fmt.Sprintf("embedded images/versions.yaml: %v", err))
	}
	return v
}

// PauseImage is the pod sandbox image reference (containerd's sandbox image).
func PauseImage() string { return mustRef("pause") }

// CoreDNSImage is the cluster DNS image reference.
func CoreDNSImage() string { return mustRef("coredns") }

// TestboxImage is the busybox-based image reference used by smoke tests.
func TestboxImage() string { return mustRef("testbox") }

// PrometheusImage is the monitoring addon's Prometheus (with its web UI).
func PrometheusImage() string { return mustRef("prometheus") }

// VictoriaLogsImage is the logging addon's log store (with its web UI).
func VictoriaLogsImage() string { return mustRef("victoria-logs") }

// OtelcolImage is the logging addon's aggregator, kubeup's OpenTelemetry
// Collector distribution.
func OtelcolImage() string { return mustRef("otelcol") }

func mustRef(name string) string {
	i, ok := Pinned().Image(name)
	if !ok {
		panic("images/versions.yaml has no image " + name)
	}
	return i.Ref()
}

// TagFor turns a component version into an image tag: a Debian epoch ("1:")
// is dropped and every character a tag cannot hold becomes "-"
// ("1:1.35.0-4+deb12u1+b1" -> "1.35.0-4-deb12u1-b1").
func TagFor(version string) string {
	if i := strings.IndexByte(version, ':'); i >= 0 {
		version = version[i+1:]
	}
	return badTagChar.ReplaceAllString(version, "-")
}

var (
	badTagChar    = regexp.MustCompile(`[^A-Za-z0-9_.-]`)
	componentName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
	sha256Hex     = regexp.MustCompile(`^[0-9a-f]{64}$`)
	// debianVersion is [epoch:]upstream[-revision] (deb-version(7)).
	debianVersion = regexp.MustCompile(`^([0-9]+:)?[0-9][A-Za-z0-9.+~-]*$`)
	plainVersion  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.+-]*$`)
)

// Load parses and validates a versions file. The error lists every problem,
// each with its field path.
func Load(data []byte) (*Versions, error) {
	var v Versions
	if err := yaml.UnmarshalStrict(data, &v); err != nil {
		return nil, fmt.Errorf("parse versions: %w", err)
	}
	for i := range v.Images {
		if c, ok := v.Component(v.Images[i].From); ok && v.Images[i].Tag == "" {
			v.Images[i].Tag = TagFor(c.Version)
		}
	}
	if err := v.Validate(); err != nil {
		return nil, err
	}
	return &v, nil
}

// Validate reports every problem in v at once.
func (v *Versions) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if len(v.Components) == 0 {
		bad("components", "no components")
	}
	seen := map[string]bool{}
	for i, c := range v.Components {
		f := fmt.Sprintf("components[%d]", i)
		if c.Name != "" {
			f = fmt.Sprintf("components[%d](%s)", i, c.Name)
		}
		switch {
		case !componentName.MatchString(c.Name):
			bad(f+".name", "%q is not a lowercase name", c.Name)
		case seen[c.Name]:
			bad(f+".name", "duplicate component %q", c.Name)
		}
		seen[c.Name] = true
		switch {
		case c.Version == "":
			bad(f+".version", "missing")
		case c.Module != "" && (!semver.IsValid(c.Version) || semver.Canonical(c.Version) != c.Version):
			bad(f+".version", "%q is not a full Go module version like v1.2.3", c.Version)
		case c.Package != "" && !debianVersion.MatchString(c.Version):
			bad(f+".version", "%q is not a Debian version", c.Version)
		case c.Module == "" && c.Package == "" && !plainVersion.MatchString(c.Version):
			bad(f+".version", "%q is not a version", c.Version)
		}
		if c.Module != "" && c.Package != "" {
			bad(f, "module and package are exclusive")
		}
		switch c.Use {
		case UseRootfs, UseHost, UseImage:
		default:
			bad(f+".use", "%q is not one of rootfs, host, image", c.Use)
		}
		if c.OnDemand && c.Use == UseRootfs {
			bad(f+".onDemand", "a component of the VM images cannot be on demand")
		}
		if c.Package != "" && len(c.Release) == 0 {
			bad(f+".release", "a Debian package needs its .deb as a release file")
		}
		installed := map[string]bool{}
		for j, r := range c.Release {
			rf := fmt.Sprintf("%s.release[%d]", f, j)
			if u, err := url.Parse(r.URL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				bad(rf+".url", "%q is not an http(s) URL", r.URL)
			}
			if r.SHA256 != "" && !sha256Hex.MatchString(r.SHA256) {
				bad(rf+".sha256", "%q is not 64 lowercase hex digits", r.SHA256)
			}
			if c.Package != "" && r.SHA256 == "" {
				bad(rf+".sha256", "a Debian package must be pinned (its digest is in Debian's Packages index)")
			}
			modes := 0
			for _, set := range []bool{r.Install != "", len(r.Extract) > 0, r.Unpack} {
				if set {
					modes++
				}
			}
			if modes != 1 {
				bad(rf, "needs exactly one of install, extract and unpack")
			}
			if r.Unpack && !strings.HasSuffix(r.URL, ".deb") {
				bad(rf+".unpack", "only a .deb is unpacked")
			}
			dests := map[string]string{"": r.Install}
			if r.Install == "" {
				dests = r.Extract
			}
			for member, dest := range dests {
				if member != "" && !isRelPath(member) {
					bad(rf+".extract", "member %q is not a relative path", member)
				}
				if dest == "" {
					continue
				}
				if !isRelPath(dest) {
					bad(rf, "install path %q is not a clean relative path", dest)
				}
				if installed[dest] {
					bad(rf, "install path %q is used twice", dest)
				}
				installed[dest] = true
			}
		}
	}
	seenImage := map[string]bool{}
	for i, im := range v.Images {
		f := fmt.Sprintf("images[%d](%s)", i, im.Name)
		switch {
		case !componentName.MatchString(im.Name):
			bad(f+".name", "%q is not a lowercase name", im.Name)
		case seenImage[im.Name]:
			bad(f+".name", "duplicate image %q", im.Name)
		}
		seenImage[im.Name] = true
		if _, err := name.NewRepository(im.Repository, name.StrictValidation); err != nil || strings.ContainsAny(im.Repository, ":@") {
			bad(f+".repository", "%q is not an image repository without tag", im.Repository)
		}
		c, ok := v.Component(im.From)
		switch {
		case !ok:
			bad(f+".from", "no component %q", im.From)
		case c.Use != UseImage && !(im.OnDemand() && c.Use == UseRootfs):
			// An on-demand test image may package a VM component (etcd).
			bad(f+".from", "component %q has use %q, want %q", im.From, c.Use, UseImage)
		default:
			if _, err := name.NewTag(im.Ref(), name.StrictValidation); err != nil {
				bad(f, "reference %q: %v", im.Ref(), err)
			}
		}
		for j, w := range im.With {
			if _, ok := v.Component(w); !ok || w == im.From || slices.Index(im.With, w) != j {
				bad(fmt.Sprintf("%s.with[%d]", f, j), "%q is not a further component", w)
			}
		}
		if im.For != "" {
			if c, ok := v.Component(im.For); !ok || !c.OnDemand {
				bad(f+".for", "%q is not an on-demand component", im.For)
			}
		}
		for _, n := range im.Components() {
			// A plain `kubeup artifacts` builds every image that is not on
			// demand, and never an on-demand component.
			if c, ok := v.Component(n); ok && c.OnDemand && !im.OnDemand() {
				bad(f, "made from the on-demand component %q but not on demand itself (set for)", n)
			}
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("invalid versions: %w", errors.Join(errs...))
	}
	return nil
}

func isRelPath(p string) bool {
	return p != "" && !path.IsAbs(p) && path.Clean(p) == p && p != "." && !strings.HasPrefix(p, "../")
}
