// Package build is `kubeup build`: it turns the cached Debian base layer, the
// pinned artifacts and the rendered role units into bootable master and node
// disk images, with a JSON manifest for each.
//
// Layers are cached by their inputs: the base layer (mmdebstrap) by its
// package list, artifacts by theirs (images/artifacts), and a role's images
// by everything that goes into them, so a rebuild with nothing changed only
// reads manifests, and a changed unit reuses the base layer.
package build
