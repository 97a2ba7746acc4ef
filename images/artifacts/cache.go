package artifacts

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"kubeup.dev/kubeup/images"
)

// schemaVersion is part of every key and manifest: bump it when the cache
// layout or the meaning of a key input changes, and every entry is rebuilt.
const schemaVersion = 1

// plan is what Ensure does for one artifact: its identity, the inputs hashed
// into its key, and how to produce its files.
type plan struct {
	kind          Kind
	name, version string
	use           images.Use
	source        Source
	// main is the principal file, relative to the root.
	main string
	// keyInput is everything the files are made from; it is JSON-encoded
	// (maps with sorted keys) and hashed into key.
	keyInput  any
	key       string
	goVersion string
	// deps are artifacts (earlier in the plan list) this one is made from.
	deps []string
	// build writes the files under root. It returns image details for images.
	build func(ctx context.Context, root string, deps map[string]*Artifact, p progress) (*ImageInfo, error)
}

// computeKey hashes the schema version, name and key input.
func computeKey(name string, input any) (string, error) {
	b, err := json.Marshal(struct {
		Schema int    `json:"schema"`
		Name   string `json:"name"`
		Input  any    `json:"input"`
	}{schemaVersion, name, input})
	if err != nil {
		return "", fmt.Errorf("cache key for %s: %w", name, err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

func entryDir(cacheDir string, kind Kind, name, key string) string {
	sub := "artifacts"
	if kind == KindImage {
		sub = "images"
	}
	return filepath.Join(cacheDir, sub, name, key)
}

// ensurePlans runs plans in order: a cache hit costs one manifest read and an
// lstat per file; a miss builds into a temporary directory that is renamed
// into place only when complete.
func ensurePlans(ctx context.Context, o *Options, plans []*plan) (*Set, error) {
	set := &Set{}
	done := map[string]*Artifact{}
	var missing []string
	for _, pl := range plans {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		dir := entryDir(o.CacheDir, pl.kind, pl.name, pl.key)
		if m, err := lookup(dir, pl.key); err == nil {
			a := &Artifact{Manifest: *m, Dir: dir, Cached: true}
			set.Artifacts = append(set.Artifacts, a)
			if pl.kind == KindComponent {
				done[pl.name] = a
			}
			continue
		}
		if o.CacheOnly {
			missing = append(missing, pl.name)
			continue
		}
		a, err := install(ctx, o, pl, dir, done)
		if err != nil {
			return nil, err
		}
		set.Artifacts = append(set.Artifacts, a)
		if pl.kind == KindComponent {
			done[pl.name] = a
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: %s (run kubeup artifacts)", ErrNotCached, strings.Join(missing, ", "))
	}
	return set, nil
}

// lookup reads and checks a cache entry: the manifest's key must match and
// every file must exist with its recorded size. Digests are not recomputed.
func lookup(dir, key string) (*Manifest, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	if m.Key != key || m.SchemaVersion != schemaVersion || m.Name != filepath.Base(filepath.Dir(dir)) {
		return nil, fmt.Errorf("%s: manifest is for key %s", dir, m.Key)
	}
	for _, f := range m.Files {
		fi, err := os.Lstat(filepath.Join(dir, "root", filepath.FromSlash(f.Path)))
		if err != nil {
			return nil, err
		}
		switch {
		case f.Link != "":
			if fi.Mode()&fs.ModeSymlink == 0 {
				return nil, fmt.Errorf("%s: %s is not a symlink", dir, f.Path)
			}
		case !fi.Mode().IsRegular() || fi.Size() != f.Size:
			return nil, fmt.Errorf("%s: %s changed", dir, f.Path)
		}
	}
	return &m, nil
}

func install(ctx context.Context, o *Options, pl *plan, dir string, done map[string]*Artifact) (*Artifact, error) {
	p := progress{w: o.Progress, name: pl.name}
	if pl.kind == KindImage {
		p.name += " image"
	}
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", pl.name, err)
	}
	tmp, err := os.MkdirTemp(parent, ".tmp-")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pl.name, err)
	}
	renamed := false
	defer func() {
		if !renamed {
			os.RemoveAll(tmp)
		}
	}()
	root := filepath.Join(tmp, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		return nil, fmt.Errorf("%s: %w", pl.name, err)
	}
	deps := map[string]*Artifact{}
	for _, d := range pl.deps {
		if done[d] == nil {
			return nil, fmt.Errorf("%s: dependency %s was not ensured", pl.name, d)
		}
		deps[d] = done[d]
	}
	p.printf("%s %s from %s", verb(pl.source), pl.version, describeSource(pl))
	start := time.Now()
	img, err := pl.build(ctx, root, deps, p)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", pl.name, pl.version, err)
	}
	files, err := scanRoot(root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pl.name, err)
	}
	main := pl.main
	if main == "" {
		// Not known before the build (unpacked packages): the first file.
		for _, f := range files {
			if f.Link == "" {
				main = f.Path
				break
			}
		}
	}
	m := Manifest{
		Kind: pl.kind, Name: pl.name, Version: pl.version, Source: pl.source, Use: pl.use, Key: pl.key,
		Main: main, Files: files, Image: img, GoVersion: pl.goVersion,
		BuildSeconds:  time.Since(start).Round(time.Millisecond).Seconds(),
		SchemaVersion: schemaVersion,
	}
	if m.MainFile().Path == "" {
		return nil, fmt.Errorf("%s: main file %s was not produced", pl.name, pl.main)
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", pl.name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "manifest.json"), append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("%s: %w", pl.name, err)
	}
	// An entry that exists but failed lookup is broken (files deleted or
	// changed): replace it.
	if _, err := os.Lstat(dir); err == nil {
		if _, lerr := lookup(dir, pl.key); lerr != nil {
			if err := os.RemoveAll(dir); err != nil {
				return nil, fmt.Errorf("%s: remove broken cache entry: %w", pl.name, err)
			}
		}
	}
	if err := os.Rename(tmp, dir); err != nil {
		// Another kubeup finished the same entry first: use theirs.
		if m2, lerr := lookup(dir, pl.key); lerr == nil {
			return &Artifact{Manifest: *m2, Dir: dir, Cached: true}, nil
		}
		return nil, fmt.Errorf("%s: %w", pl.name, err)
	}
	renamed = true
	mainFile := m.MainFile()
	links := 0
	for _, f := range files {
		if f.Link != "" {
			links++
		}
	}
	p.printf("done in %s: %s %s; %d files (%s), %d symlinks", time.Since(start).Round(100*time.Millisecond),
		mainFile.Path, humanSize(mainFile.Size), len(files)-links, humanSize(m.TotalSize()), links)
	return &Artifact{Manifest: m, Dir: dir}, nil
}

func verb(s Source) string {
	if s == SourceBuild {
		return "building"
	}
	return "fetching"
}

func describeSource(pl *plan) string {
	switch in := pl.keyInput.(type) {
	case buildInput:
		return "module " + in.ModuleDir
	case releaseInput:
		if len(in.Files) == 1 {
			return in.Files[0].URL
		}
		return fmt.Sprintf("%d release files", len(in.Files))
	case imageInput:
		if len(in.WithKeys) > 0 {
			return "components " + strings.Join(append([]string{in.From}, slices.Sorted(maps.Keys(in.WithKeys))...), ", ")
		}
		return "component " + in.From
	}
	return string(pl.source)
}

// scanRoot lists the files and symlinks under root with sizes and digests.
func scanRoot(root string) ([]File, error) {
	var files []File
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		f := File{Path: filepath.ToSlash(rel), Mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if f.Link, err = os.Readlink(path); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			f.Size = fi.Size()
			if f.SHA256, err = fileSHA256(path); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: unexpected file type %s", rel, fi.Mode().Type())
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("scan output: %w", err)
	}
	return files, nil
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
