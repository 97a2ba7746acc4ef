package addonmanager

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
)

// Mode is how an addon is kept: the value of components.AddonModeLabel.
type Mode string

// Modes, as upstream's kube-addon-manager defines them.
const (
	// Reconcile objects are kept as declared: re-created when deleted,
	// re-applied when edited, deleted when their manifest goes away.
	Reconcile Mode = components.AddonModeReconcile
	// EnsureExists objects are created when missing and never updated or
	// deleted: users may edit them.
	EnsureExists Mode = components.AddonModeEnsure
)

// Labels the manager puts on what it creates. Pruning only ever deletes
// objects that carry ManagedByLabel=FieldManager, so objects someone else
// labelled with addonmanager.kubernetes.io/mode are left alone.
const (
	ManagedByLabel = "addons.kubeup.dev/managed-by"
	FieldManager   = "kubeup-addon-manager"
)

// Addon is one object declared in a manifest file.
type Addon struct {
	// Object is what is sent to the API server: the manifest's object with
	// server-set metadata removed and ManagedByLabel added.
	Object *unstructured.Unstructured
	Mode   Mode
	// Source names the file and document, for logs: "/etc/kubeup/addons/x.yaml#2".
	Source string
}

// GroupKind of the object.
func (a Addon) GroupKind() schema.GroupKind { return a.Object.GroupVersionKind().GroupKind() }

// String names the object for logs: "Deployment kube-system/coredns".
func (a Addon) String() string {
	return describe(a.GroupKind(), a.Object.GetNamespace(), a.Object.GetName())
}

// ManifestError is a manifest file, document or object the manager refused.
type ManifestError struct {
	Source string // file, or file#document
	Object string // "Kind namespace/name" when the problem is one object's
	Err    error
}

func (e *ManifestError) Error() string {
	if e.Object != "" {
		return fmt.Sprintf("%s: %s: %v", e.Source, e.Object, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Source, e.Err)
}

func (e *ManifestError) Unwrap() error { return e.Err }

// Sentinel errors of refused objects, for errors.Is.
var (
	ErrNoMode      = errors.New("no " + components.AddonModeLabel + " label (must be Reconcile or EnsureExists)")
	ErrBadMode     = errors.New("unsupported " + components.AddonModeLabel + " label (must be Reconcile or EnsureExists)")
	ErrDuplicate   = errors.New("declared more than once")
	ErrMissingDir  = errors.New("manifest directory does not exist")
	manifestSuffix = []string{".yaml", ".yml", ".json"}
)

// LoadManifests reads every *.yaml, *.yml and *.json file under dirs (in the
// order given, each walked in lexical order; files and directories whose
// name starts with '.' are skipped). Files may hold several YAML documents
// and v1 List objects. It returns the addons it accepted and, joined, a
// *ManifestError for every file that could not be read or parsed and every
// object it refused. A directory that does not exist is an error too: an
// error means the declared set is incomplete, and callers must not prune.
//
// Rendered are manifests the manager made in memory (the cluster's own
// addons, Source "rendered:<name>"), read first and held to the same rules.
func LoadManifests(dirs []string, rendered ...components.File) ([]Addon, error) {
	var (
		addons []Addon
		errs   []error
		seen   = map[objectKey]string{}
	)
	add := func(got []Addon, ferrs []error) {
		errs = append(errs, ferrs...)
		for _, a := range got {
			k := keyOf(a.Object)
			if prev, dup := seen[k]; dup {
				errs = append(errs, &ManifestError{Source: a.Source, Object: a.String(),
					Err: fmt.Errorf("%w (first in %s)", ErrDuplicate, prev)})
				continue
			}
			seen[k] = a.Source
			addons = append(addons, a)
		}
	}
	for _, f := range rendered {
		add(loadData(RenderedSource+filepath.Base(f.Path), f.Content))
	}
	for _, dir := range dirs {
		files, err := manifestFiles(dir)
		if err != nil {
			errs = append(errs, &ManifestError{Source: dir, Err: err})
			continue
		}
		for _, file := range files {
			add(loadFile(file))
		}
	}
	return addons, errors.Join(errs...)
}

// RenderedSource prefixes the Source of manifests rendered in memory.
const RenderedSource = "rendered:"

func manifestFiles(dir string) ([]string, error) {
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, ErrMissingDir
		}
		return nil, err
	}
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !hasManifestSuffix(d.Name()) {
			return nil
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk: %w", err)
	}
	return files, nil
}

func hasManifestSuffix(name string) bool {
	for _, s := range manifestSuffix {
		if strings.HasSuffix(name, s) {
			return true
		}
	}
	return false
}

// loadFile decodes one file; a file that cannot be read or split into
// documents is refused whole, a document that does not decode is refused
// alone.
func loadFile(path string) ([]Addon, []error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, []error{&ManifestError{Source: path, Err: err}}
	}
	return loadData(path, data)
}

// loadData decodes the documents of one file's content, named path.
func loadData(path string, data []byte) ([]Addon, []error) {
	var (
		addons []Addon
		errs   []error
	)
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := 1; ; doc++ {
		raw, err := r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, []error{&ManifestError{Source: path, Err: fmt.Errorf("split documents: %w", err)}}
		}
		source := fmt.Sprintf("%s#%d", path, doc)
		got, err := decodeDocument(raw, source)
		if err != nil {
			errs = append(errs, err)
		}
		addons = append(addons, got...)
	}
	return addons, errs
}

// decodeDocument turns one YAML or JSON document into addons: none for an
// empty document, several for a List.
func decodeDocument(raw []byte, source string) ([]Addon, error) {
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, &ManifestError{Source: source, Err: fmt.Errorf("parse: %w", err)}
	}
	if t := bytes.TrimSpace(js); len(t) == 0 || bytes.Equal(t, []byte("null")) {
		return nil, nil
	}
	decoded, _, err := unstructured.UnstructuredJSONScheme.Decode(js, nil, nil)
	if err != nil {
		return nil, &ManifestError{Source: source, Err: fmt.Errorf("decode: %w", err)}
	}
	var objs []*unstructured.Unstructured
	switch o := decoded.(type) {
	case *unstructured.Unstructured:
		objs = []*unstructured.Unstructured{o}
	case *unstructured.UnstructuredList:
		for i := range o.Items {
			objs = append(objs, &o.Items[i])
		}
	default:
		return nil, &ManifestError{Source: source, Err: fmt.Errorf("decode: unexpected %T", decoded)}
	}
	var (
		addons []Addon
		errs   []error
	)
	for _, o := range objs {
		a, err := newAddon(o, source)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		addons = append(addons, a)
	}
	return addons, errors.Join(errs...)
}

// newAddon checks one object against the label rules and prepares it.
func newAddon(o *unstructured.Unstructured, source string) (Addon, error) {
	name := describe(o.GroupVersionKind().GroupKind(), o.GetNamespace(), o.GetName())
	refuse := func(err error) (Addon, error) {
		return Addon{}, &ManifestError{Source: source, Object: name, Err: err}
	}
	switch {
	case o.GetAPIVersion() == "":
		return refuse(errors.New("apiVersion is missing"))
	case o.GetKind() == "":
		return refuse(errors.New("kind is missing"))
	case o.GetName() == "":
		// generateName would create a new object on every sync.
		return refuse(errors.New("metadata.name is missing (generateName is not supported)"))
	}
	var mode Mode
	switch v, ok := o.GetLabels()[components.AddonModeLabel]; {
	case !ok:
		return refuse(ErrNoMode)
	case Mode(v) == Reconcile || Mode(v) == EnsureExists:
		mode = Mode(v)
	default:
		return refuse(fmt.Errorf("%w: %q", ErrBadMode, v))
	}
	obj := o.DeepCopy()
	// Fields the server owns would make every apply fail a precondition.
	for _, f := range []string{"resourceVersion", "uid", "creationTimestamp", "deletionTimestamp",
		"deletionGracePeriodSeconds", "generation", "managedFields", "selfLink"} {
		unstructured.RemoveNestedField(obj.Object, "metadata", f)
	}
	labels := obj.GetLabels()
	labels[ManagedByLabel] = FieldManager
	obj.SetLabels(labels)
	return Addon{Object: obj, Mode: mode, Source: source}, nil
}

func describe(gk schema.GroupKind, namespace, name string) string {
	kind := gk.Kind
	if gk.Group != "" {
		kind += "." + gk.Group
	}
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}
