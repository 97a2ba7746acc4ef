package images

import (
	"crypto/sha256"
	"encoding/hex"
)

// AgentImageRepository is where kubeup's own agent image is named.
const AgentImageRepository = "registry.kubeup.dev/kubeup-agent"

// AgentImageRef names the container image of a kubeup-agent binary (the UI
// addon runs `kubeup-agent ui` from it). The binary is kubeup's own, not a
// pinned upstream version, so the tag is its digest: the image builder and
// the renderer, given the same binary, agree on the reference.
func AgentImageRef(agent []byte) string {
	sum := sha256.Sum256(agent)
	return AgentImageRepository + ":" + hex.EncodeToString(sum[:])[:16]
}
