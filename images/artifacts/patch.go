package artifacts

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
)

// patchedSource is a patched copy of a module and the go.mod that points
// the wrapper module's build at it.
type patchedSource struct {
	work string
	// ModFile is passed to `go build -modfile`.
	ModFile string
}

// Close removes the copy (with node_modules, some hundred MB).
func (s *patchedSource) Close() error { return os.RemoveAll(s.work) }

// preparePatch copies the module pinned by the wrapper module in dir, applies
// the patch and returns the go.mod to build with.
func preparePatch(ctx context.Context, goCmd, dir string, sp *sourcePatch, p progress) (_ *patchedSource, err error) {
	out, err := run(ctx, dir, buildEnv(false), goCmd, "mod", "download", "-json", sp.Module)
	if err != nil {
		return nil, fmt.Errorf("download %s: %w", sp.Module, err)
	}
	var dl struct{ Dir, Version, Error string }
	if err := json.Unmarshal(out, &dl); err != nil || dl.Dir == "" {
		return nil, fmt.Errorf("download %s: %s%v", sp.Module, dl.Error, err)
	}
	work, err := os.MkdirTemp("", "kubeup-patch-")
	if err != nil {
		return nil, err
	}
	s := &patchedSource{work: work}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	src := filepath.Join(work, "src")
	p.printf("patching a copy of %s %s", sp.Module, dl.Version)
	if err := copyModule(dl.Dir, src, sp.Keep); err != nil {
		return nil, fmt.Errorf("copy %s: %w", sp.Module, err)
	}
	if sp.UI != nil {
		if err := buildUI(ctx, work, filepath.Join(src, filepath.FromSlash(sp.UI.Dir)), sp.UI, p); err != nil {
			return nil, err
		}
	}
	for _, rel := range slices.Sorted(maps.Keys(sp.Files)) {
		dst := filepath.Join(src, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(dst, []byte(sp.Files[rel]), 0o644); err != nil {
			return nil, err
		}
	}
	for _, e := range sp.Edits {
		if err := applyEdit(src, e); err != nil {
			return nil, fmt.Errorf("patch %s %s: %w", sp.Module, dl.Version, err)
		}
	}
	// The wrapper's go.mod plus a replace to the copy; go.sum beside it.
	gomod := filepath.Join(dir, "go.mod")
	data, err := os.ReadFile(gomod)
	if err != nil {
		return nil, err
	}
	f, err := modfile.Parse(gomod, data, nil)
	if err != nil {
		return nil, err
	}
	if err := f.AddReplace(sp.Module, "", src, ""); err != nil {
		return nil, err
	}
	patched, err := f.Format()
	if err != nil {
		return nil, err
	}
	s.ModFile = filepath.Join(work, "go.mod")
	if err := os.WriteFile(s.ModFile, patched, 0o644); err != nil {
		return nil, err
	}
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(work, "go.sum"), sum, 0o644); err != nil {
		return nil, err
	}
	return s, nil
}

// applyEdit replaces e.Old, which must be in the file exactly once, with
// e.New in the module copy src.
func applyEdit(src string, e sourceEdit) error {
	file := filepath.Join(src, filepath.FromSlash(e.Path))
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	switch n := strings.Count(string(data), e.Old); n {
	case 1:
	case 0:
		return fmt.Errorf("%s has no %q (upstream changed it: update the edit in images/artifacts/recipes.go)", e.Path, e.Old)
	default:
		return fmt.Errorf("%s has %q %d times, the edit expects it once", e.Path, e.Old, n)
	}
	return os.WriteFile(file, []byte(strings.Replace(string(data), e.Old, e.New, 1)), 0o644)
}

// copyModule copies a module tree (read-only in the module cache) to a
// writable dst, leaving out the files that keep prunes.
func copyModule(src, dst string, keep map[string][]string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if kept, pruned := keep[filepath.ToSlash(filepath.Dir(rel))]; pruned && !slices.Contains(kept, d.Name()) {
			return nil
		}
		if !d.Type().IsRegular() {
			return fmt.Errorf("%s is not a regular file", rel)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(path, target, fi.Mode().Perm()|0o200)
	})
}

// buildUI installs pnpm into work, runs the UI build in dir and gzips its
// output for go:embed.
func buildUI(ctx context.Context, work, dir string, ui *uiBuild, p progress) error {
	hint := func(err error) error {
		return fmt.Errorf("build the web UI (needs Node.js >= 20.19 and npm with the npm registry): %w", err)
	}
	if len(ui.Overrides) > 0 {
		ws := filepath.Join(dir, "pnpm-workspace.yaml")
		data, err := os.ReadFile(ws)
		if err != nil {
			return hint(err)
		}
		if bytes.Contains(data, []byte("\noverrides:")) {
			return fmt.Errorf("%s already has overrides: update the recipe", ws)
		}
		var b strings.Builder
		b.WriteString("\noverrides:\n")
		for _, k := range slices.Sorted(maps.Keys(ui.Overrides)) {
			fmt.Fprintf(&b, "  %q: %q\n", k, ui.Overrides[k])
		}
		if err := os.WriteFile(ws, append(data, b.String()...), 0o644); err != nil {
			return hint(err)
		}
	}
	tools := filepath.Join(work, "tools")
	p.printf("npm install pnpm@%s", ui.PNPM)
	if _, err := run(ctx, work, nil, "npm", "install", "--no-audit", "--no-fund", "--prefix", tools, "pnpm@"+ui.PNPM); err != nil {
		return hint(err)
	}
	bin := filepath.Join(tools, "node_modules", ".bin")
	env := append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"),
		"CI=true", "npm_config_update_notifier=false")
	start := time.Now()
	stop := p.tick("building the web UI", tickInterval)
	defer stop()
	// Not --frozen-lockfile: overrides change the lockfile; every other
	// package stays at its locked version.
	if _, err := run(ctx, dir, env, filepath.Join(bin, "pnpm"), "install", "--no-frozen-lockfile"); err != nil {
		return hint(err)
	}
	if _, err := run(ctx, dir, env, ui.Run[0], ui.Run[1:]...); err != nil {
		return hint(err)
	}
	n, err := gzipTree(filepath.Join(dir, filepath.FromSlash(ui.Output)))
	if err != nil {
		return hint(err)
	}
	p.printf("built the web UI in %s (%s gzipped)", time.Since(start).Round(100*time.Millisecond), humanSize(n))
	return nil
}

// gzipTree replaces every file under dir with name.gz (no name, no time in
// the header, so equal files give equal bytes) and returns the total size.
func gzipTree(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".gz") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return err
		}
		if _, err := zw.Write(data); err != nil {
			return err
		}
		if err := zw.Close(); err != nil {
			return err
		}
		if err := os.WriteFile(path+".gz", buf.Bytes(), 0o644); err != nil {
			return err
		}
		total += int64(buf.Len())
		return os.Remove(path)
	})
	if err == nil && total == 0 {
		err = fmt.Errorf("%s: the UI build produced no files", dir)
	}
	return total, err
}
