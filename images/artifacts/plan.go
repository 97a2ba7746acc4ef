package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/mod/modfile"

	"kubeup.dev/kubeup/images"
)

// buildInput is the key input of a component built from its wrapper module.
type buildInput struct {
	Version   string `json:"version"`
	Module    string `json:"module,omitempty"`
	ModuleDir string `json:"moduleDir"`
	Go        goEnv  `json:"go"`
	// Env is what kubeup sets for `go build` (GOOS, CGO_ENABLED, GOFLAGS, ...).
	Env    []string    `json:"env"`
	Recipe buildRecipe `json:"recipe"`
	// ModuleFiles maps the wrapper module's go.mod, go.sum and *.go files to
	// their sha256.
	ModuleFiles map[string]string `json:"moduleFiles"`
	// Node is `node --version` for recipes that build a web UI.
	Node string `json:"node,omitempty"`
}

// releaseInput is the key input of a component downloaded from its release.
type releaseInput struct {
	Version string               `json:"version"`
	Files   []images.ReleaseFile `json:"files"`
}

// imageInput is the key input of a container image. The fields after
// Created are empty, and so left out of the key, for images made from one
// component.
type imageInput struct {
	Ref     string      `json:"ref"`
	From    string      `json:"from"`
	FromKey string      `json:"fromKey"`
	Recipe  imageRecipe `json:"recipe"`
	Created int64       `json:"created"`
	// WithKeys maps the image's further components to their keys.
	WithKeys map[string]string `json:"withKeys,omitempty"`
	// Sources maps the image paths of the recipe's ModuleFiles to their
	// sha256 (the module's version is already in the component's key; this
	// also catches a changed module cache).
	Sources map[string]string `json:"sources,omitempty"`
}

// planAll turns the selection into plans with their keys. It fails before
// anything is built if a selected component cannot be had from the chosen
// source, listing every such problem.
func planAll(ctx context.Context, o *Options) ([]*plan, error) {
	v := o.Versions
	comps, imgs, err := selected(v, o.Only)
	if err != nil {
		return nil, err
	}
	gos := &goEnvs{goCmd: o.Go, byDir: map[string]goEnv{}}
	var plans []*plan
	var errs []error
	byName := map[string]*plan{}
	for _, n := range comps {
		c, _ := v.Component(n)
		recipe, canBuild := buildRecipeFor(c, o.SourceDateEpoch)
		useRelease := !canBuild || (o.Source == SourceRelease && len(c.Release) > 0)
		var pl *plan
		if useRelease {
			pl, err = releasePlan(o, c)
		} else {
			pl, err = buildPlan(ctx, o, gos, c, recipe)
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		plans = append(plans, pl)
		byName[n] = pl
	}
	for _, n := range imgs {
		im, _ := v.Image(n)
		planned := true
		for _, c := range im.Components() {
			planned = planned && byName[c] != nil
		}
		if !planned {
			continue // a component failed to plan: already reported
		}
		pl, err := imagePlan(ctx, o, im, byName)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		plans = append(plans, pl)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return plans, nil
}

func releasePlan(o *Options, c images.Component) (*plan, error) {
	if len(c.Release) == 0 {
		return nil, fmt.Errorf("%s: neither a build recipe nor release files", c.Name)
	}
	for _, r := range c.Release {
		if r.SHA256 == "" {
			return nil, fmt.Errorf("%w for %s; use --source build (%s has none in images/versions.yaml)", ErrUnpinned, c.Name, r.URL)
		}
	}
	in := releaseInput{Version: c.Version, Files: c.Release}
	key, err := computeKey(c.Name, in)
	if err != nil {
		return nil, err
	}
	src := SourceRelease
	if c.Package != "" {
		src = SourceDebian
	}
	return &plan{
		kind: KindComponent, name: c.Name, version: c.Version, use: c.Use, source: src, keyInput: in, key: key,
		main: mainReleaseFile(c.Release[0]),
		build: func(ctx context.Context, root string, _ map[string]*Artifact, p progress) (*ImageInfo, error) {
			for _, r := range c.Release {
				if err := installRelease(ctx, o, r, root, p); err != nil {
					return nil, err
				}
			}
			return nil, nil
		},
	}, nil
}

// mainReleaseFile is the install path of a release file, or of the first
// member (in sorted order) of an archive; for an unpacked package it is not
// known before the build ("": the first file installed).
func mainReleaseFile(r images.ReleaseFile) string {
	if r.Unpack {
		return ""
	}
	if r.Install != "" {
		return r.Install
	}
	members := slices.Sorted(maps.Keys(r.Extract))
	return r.Extract[members[0]]
}

// findSrcDir sets o.SrcDir from the working directory if it is empty.
func (o *Options) findSrcDir() error {
	if o.SrcDir != "" {
		return nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return err
	}
	o.SrcDir, err = FindSrcDir(wd)
	return err
}

func buildPlan(ctx context.Context, o *Options, gos *goEnvs, c images.Component, recipe buildRecipe) (*plan, error) {
	if err := o.findSrcDir(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	rel := filepath.Join("images", "modules", c.Name)
	dir := filepath.Join(o.SrcDir, rel)
	if c.Module != "" {
		if err := checkModule(dir, c.Module, c.Version); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name, err)
		}
	}
	files, err := moduleFiles(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	cgo := false
	for _, b := range recipe.Builds {
		cgo = cgo || b.CGO
	}
	env, err := gos.get(ctx, dir, cgo)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name, err)
	}
	in := buildInput{
		Version: c.Version, Module: c.Module, ModuleDir: filepath.ToSlash(rel), Go: env,
		Env: pinnedEnv(false), Recipe: recipe, ModuleFiles: files,
	}
	if recipe.Patch != nil && recipe.Patch.UI != nil {
		out, err := run(ctx, dir, nil, "node", "--version")
		if err != nil {
			return nil, fmt.Errorf("%s: its web UI is built with Node.js (>= 20.19) and npm: %w", c.Name, err)
		}
		in.Node = strings.TrimSpace(string(out))
	}
	key, err := computeKey(c.Name, in)
	if err != nil {
		return nil, err
	}
	return &plan{
		kind: KindComponent, name: c.Name, version: c.Version, use: c.Use, source: SourceBuild, keyInput: in, key: key,
		goVersion: env.Version, main: recipe.Builds[0].Output,
		build: func(ctx context.Context, root string, _ map[string]*Artifact, p progress) (*ImageInfo, error) {
			return nil, runBuilds(ctx, o.Go, dir, root, recipe, p)
		},
	}, nil
}

func imagePlan(ctx context.Context, o *Options, im images.Image, byName map[string]*plan) (*plan, error) {
	recipe, ok := imageRecipeFor(im.Name)
	if !ok {
		return nil, fmt.Errorf("image %s: no image recipe (add one in images/artifacts/recipes.go)", im.Name)
	}
	from := byName[im.From]
	in := imageInput{Ref: im.Ref(), From: im.From, FromKey: from.key, Recipe: recipe, Created: o.SourceDateEpoch}
	for _, w := range im.With {
		if in.WithKeys == nil {
			in.WithKeys = map[string]string{}
		}
		in.WithKeys[w] = byName[w].key
	}
	for _, c := range recipe.allCopies() {
		if !slices.Contains(im.With, c.Component) {
			return nil, fmt.Errorf("image %s: its recipe copies from %s, which is not in its with: list", im.Name, c.Component)
		}
	}
	sources, err := moduleSources(ctx, o, im, recipe.allModuleFiles())
	if err != nil {
		return nil, fmt.Errorf("image %s: %w", im.Name, err)
	}
	for to, file := range sources {
		sum, err := fileSHA256(file)
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", im.Name, err)
		}
		if in.Sources == nil {
			in.Sources = map[string]string{}
		}
		in.Sources[to] = sum
	}
	key, err := computeKey(im.Name, in)
	if err != nil {
		return nil, err
	}
	tarball := "var/lib/kubeup/images/" + im.Name + ".tar"
	use := images.UseRootfs
	if im.OnDemand() {
		// A test runner imports it; it is not preloaded into VM images.
		use = images.UseHost
	}
	return &plan{
		kind: KindImage, name: im.Name, version: im.Tag, use: use, source: SourceBuild, keyInput: in, key: key,
		main: tarball, deps: im.Components(),
		build: func(ctx context.Context, root string, deps map[string]*Artifact, p progress) (*ImageInfo, error) {
			src := imageSources{from: deps[im.From], with: map[string]*Artifact{}, module: sources}
			for _, w := range im.With {
				src.with[w] = deps[w]
			}
			return buildImage(ctx, im.Ref(), recipe, src, o.SourceDateEpoch, filepath.Join(root, filepath.FromSlash(tarball)), tarball, p)
		},
	}, nil
}

// moduleSources finds the recipe's ModuleFiles in the module cache: each is
// a file of the Go module a component is built from, at the version its
// wrapper module requires (`go list -m` there). It returns image path ->
// file.
func moduleSources(ctx context.Context, o *Options, im images.Image, files []moduleFile) (map[string]string, error) {
	if len(files) == 0 {
		return nil, nil
	}
	if err := o.findSrcDir(); err != nil {
		return nil, err
	}
	dirs := map[string]string{}
	out := map[string]string{}
	for _, f := range files {
		if !slices.Contains(im.Components(), f.Component) {
			return nil, fmt.Errorf("its recipe takes module files of %s, which it is not made from", f.Component)
		}
		c, _ := o.Versions.Component(f.Component)
		if c.Module == "" {
			return nil, fmt.Errorf("component %s has no Go module to take %s from", c.Name, f.Path)
		}
		dir, ok := dirs[c.Name]
		if !ok {
			b, err := run(ctx, filepath.Join(o.SrcDir, "images", "modules", c.Name), buildEnv(false), o.Go, "list", "-m", "-f", "{{.Dir}}", c.Module)
			if err != nil {
				return nil, fmt.Errorf("find module %s: %w", c.Module, err)
			}
			if dir = strings.TrimSpace(string(b)); dir == "" {
				return nil, fmt.Errorf("module %s is not in the module cache (go mod download in images/modules/%s)", c.Module, c.Name)
			}
			dirs[c.Name] = dir
		}
		out[f.To] = filepath.Join(dir, filepath.FromSlash(f.Path))
	}
	return out, nil
}

// checkModule makes sure the wrapper module builds the pinned version.
func checkModule(dir, module, version string) error {
	gomod := filepath.Join(dir, "go.mod")
	data, err := os.ReadFile(gomod)
	if err != nil {
		return fmt.Errorf("wrapper module: %w", err)
	}
	f, err := modfile.ParseLax(gomod, data, nil)
	if err != nil {
		return fmt.Errorf("wrapper module: %w", err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == module {
			if r.Mod.Version != version {
				return fmt.Errorf("%s requires %s %s but images/versions.yaml pins %s (run: cd %s && go get %s@%s && go mod tidy)",
					gomod, module, r.Mod.Version, version, dir, module, version)
			}
			return nil
		}
	}
	return fmt.Errorf("%s does not require %s (pinned %s in images/versions.yaml)", gomod, module, version)
}

// moduleFiles hashes the files of a wrapper module that determine the build.
func moduleFiles(dir string) (map[string]string, error) {
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		n := d.Name()
		if n != "go.mod" && n != "go.sum" && (!strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go")) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		files[filepath.ToSlash(rel)] = hex.EncodeToString(sum[:])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("wrapper module: %w", err)
	}
	if files["go.mod"] == "" {
		return nil, fmt.Errorf("wrapper module %s has no go.mod", dir)
	}
	return files, nil
}
