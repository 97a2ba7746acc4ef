package artifacts

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/blakesmith/ar"
	"github.com/ulikunitz/xz"

	"kubeup.dev/kubeup/images"
)

// installRelease fetches one release file (verified) and installs it, or the
// members it names, under root.
func installRelease(ctx context.Context, o *Options, r images.ReleaseFile, root string, p progress) error {
	file, err := fetchVerified(ctx, o.HTTPClient, r.URL, r.SHA256, filepath.Join(o.CacheDir, "downloads"), p)
	if err != nil {
		return err
	}
	if r.Install != "" {
		return copyFile(file, filepath.Join(root, filepath.FromSlash(r.Install)), 0o755)
	}
	name := releaseFileName(r.URL)
	switch {
	case r.Unpack && strings.HasSuffix(name, ".deb"):
		return withDebData(file, func(data io.Reader) error {
			if err := unpackTar(data, root); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	case strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"):
		return extractTarGz(file, r.Extract, root)
	case strings.HasSuffix(name, ".deb"):
		return extractDeb(file, r.Extract, root)
	}
	return fmt.Errorf("%s: cannot extract from this kind of file (want .tar.gz, .tgz or .deb)", name)
}

func releaseFileName(rawURL string) string {
	if u, err := url.Parse(rawURL); err == nil {
		return path.Base(u.Path)
	}
	return path.Base(rawURL)
}

// fetchVerified returns the path of the file with digest want under dir
// (dir/sha256/<digest>), downloading it if needed. The download goes to a
// temporary file that is renamed into place only after its digest matched, so
// the cache never holds an unverified file.
func fetchVerified(ctx context.Context, client *http.Client, rawURL, want, dir string, p progress) (string, error) {
	name := releaseFileName(rawURL)
	if want == "" {
		return "", fmt.Errorf("%w for %s", ErrUnpinned, name)
	}
	final := filepath.Join(dir, "sha256", want)
	if fi, err := os.Stat(final); err == nil && fi.Mode().IsRegular() {
		return final, nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return "", fmt.Errorf("download %s: %w", name, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", name, err)
	}
	p.printf("downloading %s", rawURL)
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("download %s: %w", name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("download %s: %s: HTTP %s", name, rawURL, resp.Status)
	}
	tmp, err := os.CreateTemp(filepath.Dir(final), ".download-")
	if err != nil {
		return "", fmt.Errorf("download %s: %w", name, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), resp.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil && resp.ContentLength >= 0 && n != resp.ContentLength {
		err = fmt.Errorf("got %d of %d bytes", n, resp.ContentLength)
	}
	if err != nil {
		return "", fmt.Errorf("download %s: %s: %w", name, rawURL, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != want {
		return "", fmt.Errorf("download %s: %w: expected %s, actual %s (%s)", name, ErrChecksum, want, got, rawURL)
	}
	if err := os.Rename(tmp.Name(), final); err != nil {
		return "", fmt.Errorf("download %s: %w", name, err)
	}
	p.printf("downloaded %s (%s) in %s, sha256 verified", name, humanSize(n), time.Since(start).Round(100*time.Millisecond))
	return final, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeFile(dst, in, mode)
}

func writeFile(dst string, r io.Reader, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func extractTarGz(file string, members map[string]string, root string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(file), err)
	}
	return extractTar(zr, members, root)
}

// extractTar writes the named regular-file members under root; a member
// missing from the archive is an error.
func extractTar(r io.Reader, members map[string]string, root string) error {
	left := maps.Clone(members)
	tr := tar.NewReader(r)
	for len(left) > 0 {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		dest, ok := left[name]
		if !ok {
			continue
		}
		if hdr.Typeflag != tar.TypeReg {
			return fmt.Errorf("archive member %s is not a regular file", name)
		}
		mode := os.FileMode(hdr.Mode).Perm() | 0o500
		if err := writeFile(filepath.Join(root, filepath.FromSlash(dest)), tr, mode); err != nil {
			return fmt.Errorf("extract %s: %w", name, err)
		}
		delete(left, name)
	}
	if len(left) > 0 {
		return fmt.Errorf("archive has no member %s", strings.Join(slices.Sorted(maps.Keys(left)), ", "))
	}
	return nil
}

// extractDeb extracts members of a Debian package's data.tar.{xz,gz}.
func extractDeb(file string, members map[string]string, root string) error {
	return withDebData(file, func(data io.Reader) error { return extractTar(data, members, root) })
}

// withDebData calls fn with the uncompressed data.tar of a Debian package. A
// .deb is an ar archive: debian-binary, control.tar.*, data.tar.*.
func withDebData(file string, fn func(io.Reader) error) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	rd := ar.NewReader(f)
	for {
		hdr, err := rd.Next()
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%s: no data.tar in the package", filepath.Base(file))
		}
		if err != nil {
			return fmt.Errorf("%s: %w", filepath.Base(file), err)
		}
		switch strings.TrimSuffix(strings.TrimSpace(hdr.Name), "/") {
		case "data.tar.xz":
			xr, err := xz.NewReader(rd)
			if err != nil {
				return fmt.Errorf("%s: data.tar.xz: %w", filepath.Base(file), err)
			}
			return fn(xr)
		case "data.tar.gz":
			zr, err := gzip.NewReader(rd)
			if err != nil {
				return fmt.Errorf("%s: data.tar.gz: %w", filepath.Base(file), err)
			}
			return fn(zr)
		case "data.tar":
			return fn(rd)
		}
	}
}

// unpackSkip are the directories of a package's files that no container
// needs: documentation and translations.
var unpackSkip = []string{"usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/lintian", "usr/share/locale", "usr/share/bug"}

// unpackTar lays out every regular file, symlink and hard link of a package's
// data archive under root at its own path (directories are made as needed;
// the image adds its parents). Nothing is written through a symlink an earlier
// entry made, and a path two packages ship is an error.
func unpackTar(r io.Reader, root string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		name := path.Clean(strings.TrimPrefix(hdr.Name, "./"))
		if name == "." || hdr.Typeflag == tar.TypeDir || slices.ContainsFunc(unpackSkip, func(d string) bool {
			return name == d || strings.HasPrefix(name, d+"/")
		}) {
			continue
		}
		if path.IsAbs(name) || name == ".." || strings.HasPrefix(name, "../") {
			return fmt.Errorf("archive member %s escapes the root", hdr.Name)
		}
		dest := filepath.Join(root, filepath.FromSlash(name))
		if err := realParents(root, name); err != nil {
			return err
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
			err = writeFile(dest, tr, os.FileMode(hdr.Mode).Perm())
		case tar.TypeSymlink:
			if err = os.MkdirAll(filepath.Dir(dest), 0o755); err == nil {
				err = os.Symlink(hdr.Linkname, dest)
			}
		case tar.TypeLink:
			target := path.Clean(strings.TrimPrefix(hdr.Linkname, "./"))
			if err = realParents(root, target); err == nil {
				err = copyFile(filepath.Join(root, filepath.FromSlash(target)), dest, os.FileMode(hdr.Mode).Perm())
			}
		default:
			return fmt.Errorf("archive member %s: cannot unpack type %q", name, hdr.Typeflag)
		}
		if err != nil {
			return fmt.Errorf("unpack %s: %w", name, err)
		}
	}
}

// realParents fails when a directory on the way to rel (under root) is a
// symlink: writing there would follow a link a package made.
func realParents(root, rel string) error {
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		fi, err := os.Lstat(filepath.Join(root, filepath.FromSlash(d)))
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			return fmt.Errorf("unpack %s: %s is a symlink", rel, d)
		}
	}
	return nil
}
