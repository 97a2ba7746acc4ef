// Package artifacts builds (or downloads) the pinned upstream components of
// images/versions.yaml into a content-addressed cache, ready for the image
// builder to copy into a root filesystem:
//
//	<cache>/artifacts/<name>/<key>/manifest.json
//	<cache>/artifacts/<name>/<key>/root/usr/local/bin/kubelet -> kubernetes, ...
//	<cache>/images/<name>/<key>/root/var/lib/kubeup/images/<name>.tar
//	<cache>/downloads/sha256/<digest>      (verified release files)
//
// The key hashes everything an artifact is made from (version, source, build
// flags, Go version, the wrapper module's go.mod/go.sum/*.go, pinned digests),
// so a cache hit is decided by reading one small manifest, and changing one
// input rebuilds only the artifacts that depend on it. Container images
// (pause, coredns, testbox) are built from component artifacts into docker-
// archive tarballs that `ctr images import` takes, under
// root/var/lib/kubeup/images/<name>.tar. The images the conformance suite's
// specs run (versions.yaml's images `for: conformance`, e.g.
// registry.k8s.io/e2e-test-images/agnhost) are built the same way but only on
// demand, some in layers shared with each other (a recipe's Lower);
// ConformanceImages finds their tarballs and ConformanceArchive combines them
// into one archive that carries each shared layer once.
//
// For the image builder: copy Root() of every artifact whose Use is
// images.UseRootfs into the VM image's root (that includes the image
// tarballs); UseHost artifacts (pulumi) are tools for the host, and UseImage
// components (coredns, pause, busybox) only exist inside container images.
package artifacts
