package agent

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// maxManifestBytes bounds a static pod manifest sent to the agent.
const maxManifestBytes = 256 << 10

var manifestNameRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// serveManifest is PUT/DELETE /v1/manifests/{name}: the kubelet's static pod
// directory, for an administrator (a system:masters certificate). The body
// must be one Pod; it is written atomically as <name>.yaml.
func (d *Daemon) serveManifest(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if !manifestNameRE.MatchString(name) || len(name) > 63 {
		http.Error(w, fmt.Sprintf("manifest name %q is not a DNS label", name), http.StatusBadRequest)
		return
	}
	path := filepath.Join(d.staticPodDir(), name+".yaml")
	if r.Method == http.MethodDelete {
		if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxManifestBytes+1))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxManifestBytes {
		http.Error(w, fmt.Sprintf("manifest is larger than %d bytes", maxManifestBytes), http.StatusRequestEntityTooLarge)
		return
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(body, &pod); err != nil || pod.Kind != "Pod" || pod.APIVersion != "v1" {
		http.Error(w, fmt.Sprintf("the body must be one v1 Pod: %v", err), http.StatusBadRequest)
		return
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	// The kubelet ignores dot files, so the temporary name is never read.
	tmp := filepath.Join(filepath.Dir(path), "."+name+".yaml.tmp")
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := os.Rename(tmp, path); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	d.log.Info("static pod manifest written", "path", path)
	w.WriteHeader(http.StatusNoContent)
}
