package artifacts

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// tickInterval is how often a running `go build` reports that it is alive.
const tickInterval = 15 * time.Second

// goEnv is what identifies the Go toolchain (and C toolchain for cgo) of a
// build; it is part of the cache key.
type goEnv struct {
	Version    string `json:"version"`
	Experiment string `json:"experiment,omitempty"`
	CC         string `json:"cc,omitempty"`
}

// goEnvs asks `go env` once per wrapper module directory (GOTOOLCHAIN may pick
// a different toolchain per go.mod).
type goEnvs struct {
	goCmd string
	mu    sync.Mutex
	byDir map[string]goEnv
}

func (g *goEnvs) get(ctx context.Context, dir string, cgo bool) (goEnv, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cacheKey := fmt.Sprintf("%s|%v", dir, cgo)
	if e, ok := g.byDir[cacheKey]; ok {
		return e, nil
	}
	out, err := run(ctx, dir, buildEnv(cgo), g.goCmd, "env", "GOVERSION", "GOEXPERIMENT", "CC")
	if err != nil {
		return goEnv{}, err
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	for len(lines) < 3 {
		lines = append(lines, "")
	}
	e := goEnv{Version: lines[0], Experiment: lines[1]}
	if cgo {
		// The C compiler matters for cgo builds (runc): key on its version.
		cc := strings.Fields(lines[2])
		if len(cc) == 0 {
			cc = []string{"gcc"}
		}
		v, err := run(ctx, dir, nil, cc[0], "--version")
		if err != nil {
			return goEnv{}, fmt.Errorf("C compiler for cgo: %w", err)
		}
		e.CC = strings.SplitN(string(v), "\n", 2)[0]
	}
	g.byDir[cacheKey] = e
	return e, nil
}

// pinnedEnv is what kubeup sets for `go build`, sorted: what decides the
// output, and so part of the cache key (the rest of the environment is not).
// GOTOOLCHAIN stays the caller's if set (a module that needs a newer Go than
// the installed one), and is "local" otherwise, so a build never downloads a
// toolchain behind the user's back.
func pinnedEnv(cgo bool) []string {
	cgoEnabled := "0"
	if cgo {
		cgoEnabled = "1"
	}
	toolchain := os.Getenv("GOTOOLCHAIN")
	if toolchain == "" {
		toolchain = "local"
	}
	return []string{
		"CGO_ENABLED=" + cgoEnabled,
		"GOAMD64=v1",
		"GOARCH=amd64",
		"GOFLAGS=-mod=readonly -buildvcs=false",
		"GOOS=linux",
		"GOTOOLCHAIN=" + toolchain,
	}
}

// buildEnv is the environment of `go build`: the caller's (GOCACHE, GOPROXY,
// proxies, ...) with pinnedEnv replacing what it sets.
func buildEnv(cgo bool) []string {
	pinned := pinnedEnv(cgo)
	set := map[string]bool{}
	for _, kv := range pinned {
		k, _, _ := strings.Cut(kv, "=")
		set[k] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !set[k] {
			env = append(env, kv)
		}
	}
	return append(env, pinned...)
}

// goBuildArgs is the `go build` (or, for a test binary, `go test -c`)
// command line of one build; modFile, if not empty, replaces the wrapper's
// go.mod (a patched source).
func goBuildArgs(b goBuild, output, modFile string) []string {
	args := []string{"build", "-trimpath"}
	if b.Test {
		// -vet=off: building a test binary is not testing it.
		args = []string{"test", "-c", "-vet=off", "-trimpath"}
	}
	if modFile != "" {
		args = append(args, "-modfile="+modFile)
	}
	if b.BuildMode != "" {
		args = append(args, "-buildmode="+b.BuildMode)
	}
	if len(b.Tags) > 0 {
		args = append(args, "-tags", strings.Join(b.Tags, ","))
	}
	return append(args, "-ldflags", strings.Join(b.LDFlags, " "), "-o", output, b.Package)
}

// runBuilds runs a recipe's builds in the wrapper module dir, then makes its
// symlinks.
func runBuilds(ctx context.Context, goCmd, dir, root string, r buildRecipe, p progress) error {
	modFile := ""
	if r.Patch != nil {
		src, err := preparePatch(ctx, goCmd, dir, r.Patch, p)
		if err != nil {
			return err
		}
		defer src.Close()
		modFile = src.ModFile
	}
	for i, b := range r.Builds {
		out := filepath.Join(root, filepath.FromSlash(b.Output))
		if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
			return err
		}
		verb := "go build"
		if b.Test {
			verb = "go test -c"
		}
		p.printf("%s %s -> %s (%d/%d)", verb, b.Package, b.Output, i+1, len(r.Builds))
		start := time.Now()
		stop := p.tick("building "+b.Output, tickInterval)
		_, err := run(ctx, dir, buildEnv(b.CGO), goCmd, goBuildArgs(b, out, modFile)...)
		stop()
		if err != nil {
			if b.Hint != "" {
				return fmt.Errorf("%w\n%s", err, b.Hint)
			}
			return err
		}
		fi, err := os.Stat(out)
		if err != nil {
			return fmt.Errorf("%s %s: %w", verb, b.Package, err)
		}
		p.printf("built %s in %s (%s)", b.Output, time.Since(start).Round(100*time.Millisecond), humanSize(fi.Size()))
	}
	for _, l := range r.Links {
		if err := symlink(root, l); err != nil {
			return err
		}
	}
	return nil
}

func symlink(root string, l link) error {
	p := filepath.Join(root, filepath.FromSlash(l.Path))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Symlink(l.Target, p); err != nil {
		return fmt.Errorf("symlink %s: %w", l.Path, err)
	}
	return nil
}

// RunError is a failed command with its output.
type RunError struct {
	Args   []string
	Dir    string
	Output []byte
	Err    error
}

func (e *RunError) Error() string {
	out := strings.TrimSpace(string(e.Output))
	if lines := strings.Split(out, "\n"); len(lines) > 40 {
		out = "...\n" + strings.Join(lines[len(lines)-40:], "\n")
	}
	return fmt.Sprintf("%s (in %s): %v\n%s", strings.Join(e.Args, " "), e.Dir, e.Err, out)
}

func (e *RunError) Unwrap() error { return e.Err }

// run runs a command and returns its stdout; on failure the error carries the
// command line and combined output. env nil means the caller's environment.
func run(ctx context.Context, dir string, env []string, name string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, &RunError{Args: append([]string{name}, args...), Dir: dir,
			Output: append(stdout.Bytes(), stderr.Bytes()...), Err: err}
	}
	return stdout.Bytes(), nil
}
