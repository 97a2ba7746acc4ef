package rootfs

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"syscall"
)

// Deduplicated is what Dedupe saved.
type Deduplicated struct {
	// Files is how many files became hard links to an identical file.
	Files int `json:"files"`
	// Bytes is the size of those files: space the root filesystem no
	// longer spends.
	Bytes int64 `json:"bytes"`
}

// DedupeMinSize is the smallest file Dedupe considers: below it the saving
// is not worth an inode shared by two packages.
const DedupeMinSize = 1 << 20

// Dedupe replaces identical regular files under the given directories of
// root by hard links to one of them (the first by path), the way ostree
// stores a tree. Only files of at least minSize bytes with the same
// content, mode, owner and group are linked. The typical case is a binary
// installed on the machine and again in a preloaded container image's
// unpacked snapshot. The files it links are read-only in an appliance: they
// are replaced by rename on upgrade, never written in place. The paths in
// keep (relative to root) stay files of their own: a copy made on purpose.
func Dedupe(root string, dirs []string, minSize int64, keep ...string) (Deduplicated, error) {
	type file struct {
		path string
		mode fs.FileMode
		uid  uint32
		gid  uint32
		dev  uint64
		ino  uint64
	}
	bySize := map[int64][]file{}
	for _, d := range dirs {
		base := filepath.Join(root, d)
		if _, err := os.Lstat(base); os.IsNotExist(err) {
			continue
		}
		err := filepath.WalkDir(base, func(p string, de fs.DirEntry, err error) error {
			if err != nil || !de.Type().IsRegular() {
				return err
			}
			if rel, _ := filepath.Rel(root, p); slices.Contains(keep, rel) {
				return nil
			}
			fi, err := de.Info()
			if err != nil {
				return err
			}
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok || fi.Size() < minSize {
				return nil
			}
			bySize[fi.Size()] = append(bySize[fi.Size()], file{path: p, mode: fi.Mode(), uid: st.Uid, gid: st.Gid, dev: uint64(st.Dev), ino: st.Ino})
			return nil
		})
		if err != nil {
			return Deduplicated{}, fmt.Errorf("dedupe %s: %w", d, err)
		}
	}
	sizes := make([]int64, 0, len(bySize))
	for s, fs := range bySize {
		if len(fs) > 1 {
			sizes = append(sizes, s)
		}
	}
	sort.Slice(sizes, func(i, j int) bool { return sizes[i] < sizes[j] })

	var saved Deduplicated
	for _, size := range sizes {
		files := bySize[size]
		sort.Slice(files, func(i, j int) bool { return files[i].path < files[j].path })
		type key struct {
			sum      [sha256.Size]byte
			mode     fs.FileMode
			uid, gid uint32
		}
		first := map[key]file{}
		for _, f := range files {
			sum, err := hashFile(f.path)
			if err != nil {
				return saved, err
			}
			k := key{sum, f.mode, f.uid, f.gid}
			keep, seen := first[k]
			if !seen {
				first[k] = f
				continue
			}
			if keep.dev == f.dev && keep.ino == f.ino {
				continue // already one file
			}
			tmp := f.path + ".kubeup-dedupe"
			if err := os.Link(keep.path, tmp); err != nil {
				return saved, fmt.Errorf("dedupe: link %s: %w", f.path, err)
			}
			if err := os.Rename(tmp, f.path); err != nil {
				os.Remove(tmp)
				return saved, fmt.Errorf("dedupe: replace %s: %w", f.path, err)
			}
			saved.Files++
			saved.Bytes += size
		}
	}
	return saved, nil
}

func hashFile(path string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	f, err := os.Open(path)
	if err != nil {
		return sum, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return sum, fmt.Errorf("dedupe: read %s: %w", path, err)
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}
