package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// Load reads, defaults and validates a config file. A file that cannot be
// read or parsed, or that is invalid, gives an error; for invalid files it is
// an ErrorList naming every problem.
func Load(path string) (*Cluster, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read cluster config: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes a config document, applies defaults and validates it.
func Parse(data []byte) (*Cluster, error) {
	c, err := Decode(data)
	if err != nil {
		return nil, err
	}
	SetDefaults(c)
	if errs := Validate(c); len(errs) > 0 {
		return nil, errs
	}
	return c, nil
}

// Decode strictly decodes a config document without defaulting: unknown
// fields and wrong types are errors with their field path.
func Decode(data []byte) (*Cluster, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, ErrorList{{Field: "", Detail: "the file is empty; start from examples/cluster.yaml"}}
	}
	js, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		return nil, decodeError(err)
	}
	if err := singleDocument(data); err != nil {
		return nil, err
	}
	var c Cluster
	// Case-sensitive and strict: "podCidr" is an unknown field, not podCIDR.
	strict, err := sigsjson.UnmarshalStrict(js, &c)
	if err != nil {
		return nil, decodeError(err)
	}
	if len(strict) > 0 {
		var list ErrorList
		for _, se := range strict {
			if fe, ok := decodeError(se).(ErrorList); ok {
				list = append(list, fe...)
			} else {
				list = append(list, FieldError{Detail: se.Error()})
			}
		}
		return nil, list
	}
	return &c, nil
}

// singleDocument refuses a file with a second YAML document: the decoder
// reads only the first, and a second cluster (or a setting pasted after a
// "---") would otherwise be ignored without a word. An empty document after
// a trailing "---" says nothing and is let through. Documents are read as
// nodes, so aliases are not expanded.
func singleDocument(data []byte) error {
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	var first yamlv3.Node
	if err := dec.Decode(&first); err != nil {
		return nil // YAMLToJSONStrict has judged the first document
	}
	var second yamlv3.Node
	err := dec.Decode(&second)
	switch {
	case errors.Is(err, io.EOF):
		return nil
	case err != nil:
		return fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(err.Error(), "yaml: "))
	case emptyDocument(&second):
		return nil
	}
	return ErrorList{{Detail: fmt.Sprintf("line %d: a second YAML document starts here; a config file holds one cluster (one file per cluster)", second.Line)}}
}

func emptyDocument(n *yamlv3.Node) bool {
	if len(n.Content) == 0 {
		return true
	}
	c := n.Content[0]
	return len(n.Content) == 1 && c.Kind == yamlv3.ScalarNode && c.Tag == "!!null" && c.Value == ""
}

var (
	unknownFieldRE = regexp.MustCompile(`unknown field "([^"]+)"`)
	duplicateRE    = regexp.MustCompile(`duplicate field "([^"]+)"`)
	typeErrorRE    = regexp.MustCompile(`cannot unmarshal (\w+) into Go struct field \w+\.([\w.]+) of type ([\w.\[\]*]+)`)
)

// decodeError turns the YAML/JSON decoder's messages into field errors.
func decodeError(err error) error {
	msg := err.Error()
	if m := unknownFieldRE.FindStringSubmatch(msg); m != nil {
		return ErrorList{{Field: m[1], Detail: "unknown field (check spelling against examples/cluster.yaml)"}}
	}
	if m := duplicateRE.FindStringSubmatch(msg); m != nil {
		return ErrorList{{Field: m[1], Detail: "is set twice"}}
	}
	if m := typeErrorRE.FindStringSubmatch(msg); m != nil {
		// Inlined structs appear in Go's path by their type name.
		field := strings.ReplaceAll(m[2], ".CloudTarget.", ".")
		return ErrorList{{Field: field, Detail: fmt.Sprintf("must be of type %s, not %s", jsonType(m[3]), m[1])}}
	}
	var se *json.SyntaxError
	if errors.As(err, &se) || strings.Contains(msg, "yaml:") {
		return fmt.Errorf("not valid YAML: %s", strings.TrimPrefix(msg, "error converting YAML to JSON: "))
	}
	return fmt.Errorf("decode cluster config: %w", err)
}

func jsonType(goType string) string {
	switch strings.TrimPrefix(goType, "*") {
	case "int", "int64", "int32":
		return "integer"
	case "bool":
		return "boolean"
	case "string":
		return "string"
	}
	if strings.HasPrefix(goType, "[]") {
		return "list"
	}
	return "object"
}
