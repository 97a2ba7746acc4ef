package addonmanager

import (
	"encoding/base64"
	"reflect"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// objectKey names an object independently of the API version it is read
// through.
type objectKey struct {
	Group, Kind, Namespace, Name string
}

func keyOf(o *unstructured.Unstructured) objectKey {
	gk := o.GroupVersionKind().GroupKind()
	return objectKey{Group: gk.Group, Kind: gk.Kind, Namespace: o.GetNamespace(), Name: o.GetName()}
}

func (k objectKey) GroupKind() schema.GroupKind {
	return schema.GroupKind{Group: k.Group, Kind: k.Kind}
}

func (k objectKey) String() string { return describe(k.GroupKind(), k.Namespace, k.Name) }

// diverged reports whether live no longer holds what desired declares:
// some declared label, annotation or field is missing or different. Fields
// desired does not mention (defaults, status, other managers' fields) are
// ignored. It errs on the side of "diverged" (a quantity the server
// canonicalised, "1000m" for "1"), which costs one apply that changes
// nothing.
func diverged(desired, live *unstructured.Unstructured) bool {
	for k, v := range desired.GetLabels() {
		if lv, ok := live.GetLabels()[k]; !ok || lv != v {
			return true
		}
	}
	for k, v := range desired.GetAnnotations() {
		if lv, ok := live.GetAnnotations()[k]; !ok || lv != v {
			return true
		}
	}
	want := asStored(desired)
	for k, v := range want {
		if k == "metadata" || k == "apiVersion" || k == "kind" {
			continue
		}
		lv, ok := live.Object[k]
		if !ok || !subset(v, lv) {
			return true
		}
	}
	return false
}

// asStored returns desired's top-level fields as the server will store
// them: a Secret's write-only stringData is merged into data.
func asStored(o *unstructured.Unstructured) map[string]any {
	sd, ok := o.Object["stringData"].(map[string]any)
	if !ok || o.GetAPIVersion() != "v1" || o.GetKind() != "Secret" {
		return o.Object
	}
	out := make(map[string]any, len(o.Object))
	for k, v := range o.Object {
		out[k] = v
	}
	delete(out, "stringData")
	data := map[string]any{}
	if d, ok := o.Object["data"].(map[string]any); ok {
		for k, v := range d {
			data[k] = v
		}
	}
	for k, v := range sd {
		if s, ok := v.(string); ok {
			data[k] = base64.StdEncoding.EncodeToString([]byte(s))
		}
	}
	out["data"] = data
	return out
}

// subset reports whether every map key of want is in have with a value
// subset of it. Lists must have the same length and match element-wise:
// the server adds defaults inside elements, not elements.
func subset(want, have any) bool {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		for k, wv := range w {
			hv, ok := h[k]
			if !ok {
				if wv == nil {
					continue
				}
				return false
			}
			if !subset(wv, hv) {
				return false
			}
		}
		return true
	case []any:
		h, ok := have.([]any)
		if !ok {
			return len(w) == 0 && have == nil
		}
		if len(w) != len(h) {
			return false
		}
		for i := range w {
			if !subset(w[i], h[i]) {
				return false
			}
		}
		return true
	case int64:
		switch h := have.(type) {
		case int64:
			return w == h
		case float64:
			return float64(w) == h
		}
		return false
	case float64:
		switch h := have.(type) {
		case int64:
			return w == float64(h)
		case float64:
			return w == h
		}
		return false
	default:
		return reflect.DeepEqual(want, have)
	}
}
