package images

import (
	"crypto/sha256"
	"encoding/hex"
)

// AddonsImageRepository is where kubeup's own addons image is named.
const AddonsImageRepository = "registry.kubeup.dev/kubeup-addons"

// AddonsImageRef names the container image of a kubeup-addons binary (the
// UI addon runs `kubeup-addons ui` from it). The binary is kubeup's own, not
// a pinned upstream version, so the tag is its digest: the image builder
// and the renderer, given the same binary, agree on the reference.
func AddonsImageRef(binary []byte) string {
	sum := sha256.Sum256(binary)
	return AddonsImageRepository + ":" + hex.EncodeToString(sum[:])[:16]
}
