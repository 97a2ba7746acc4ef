package artifacts

import (
	"context"
	"io"
	"os"
	"path/filepath"
)

// BinaryImage builds a single-layer linux/amd64 image holding one of
// kubeup's own static binaries at installPath (its entrypoint, run as
// user), as a docker-archive tarball at out, the same way the pinned
// images are built. The UI addon runs kubeup-addons from such an image.
func BinaryImage(ctx context.Context, ref, name string, binary []byte, installPath, user string, created int64, out string) (*ImageInfo, error) {
	dir, err := os.MkdirTemp(filepath.Dir(out), ".binimage-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	a := &Artifact{Dir: dir, Manifest: Manifest{Name: name, Version: "built from this checkout",
		Files: []File{{Path: installPath, Mode: 0o755, Size: int64(len(binary))}}}}
	if err := os.MkdirAll(filepath.Dir(a.Path(installPath)), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(a.Path(installPath), binary, 0o755); err != nil {
		return nil, err
	}
	r := imageRecipe{
		Entrypoint: []string{"/" + installPath},
		User:       user,
		Env:        []string{defaultPath},
		Files: map[string]string{
			"etc/passwd": "root:x:0:0:root:/root:/bin/false\nkubeup:x:65532:65532:kubeup:/nonexistent:/bin/false\n",
			"etc/group":  "root:x:0:\nkubeup:x:65532:\n",
		},
	}
	_ = os.Remove(out)
	return buildImage(ctx, ref, r, imageSources{from: a}, created, out, filepath.Base(out), progress{w: io.Discard, name: name})
}
