package agent

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

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
	if err := checkStaticPod(body); err != nil {
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

// staticPod is what the agent checks of a manifest before writing it: one
// v1 Pod with a name and named containers with images. The kubelet
// validates the whole Pod when it reads the file (and reports an invalid
// one in its log); the agent does not link core/v1's types for a second
// opinion (see kubeNode).
type staticPod struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Containers []struct {
			Name  string `json:"name"`
			Image string `json:"image"`
		} `json:"containers"`
	} `json:"spec"`
}

func checkStaticPod(body []byte) error {
	var pod staticPod
	if err := yaml.Unmarshal(body, &pod); err != nil {
		return err
	}
	switch {
	case pod.APIVersion != "v1" || pod.Kind != "Pod":
		return fmt.Errorf("apiVersion %q, kind %q", pod.APIVersion, pod.Kind)
	case pod.Metadata.Name == "":
		return errors.New("metadata.name is empty")
	case len(pod.Spec.Containers) == 0:
		return errors.New("spec.containers is empty")
	}
	for i, c := range pod.Spec.Containers {
		if c.Name == "" || c.Image == "" {
			return fmt.Errorf("spec.containers[%d] needs a name and an image", i)
		}
	}
	return nil
}
