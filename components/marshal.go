package components

import (
	"encoding/json"
	"fmt"

	"sigs.k8s.io/yaml"
)

// marshalConfig renders a typed component configuration (KubeletConfiguration,
// KubeProxyConfiguration, ...) as YAML, dropping the empty strings, zero
// numbers, zero durations ("0s") and empty objects that value-typed fields
// marshal to. Dropping them changes nothing: the components' defaulting
// treats those zero values as unset. Booleans are kept: false can be a choice.
// Top-level keys in drop are removed too (value-typed sections, such as
// logging, whose zero value would otherwise read as a setting).
func marshalConfig(v any, drop ...string) ([]byte, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(js, &m); err != nil {
		return nil, err
	}
	for _, k := range drop {
		delete(m, k)
	}
	prune(m)
	out, err := yaml.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("marshal: %w", err)
	}
	return out, nil
}

func prune(m map[string]any) {
	for k, v := range m {
		switch x := v.(type) {
		case map[string]any:
			prune(x)
			if len(x) == 0 {
				delete(m, k)
			}
		case string:
			if x == "" || x == "0s" {
				delete(m, k)
			}
		case float64:
			if x == 0 {
				delete(m, k)
			}
		case nil:
			delete(m, k)
		}
	}
}
