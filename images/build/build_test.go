package build

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/images/artifacts"
	"kubeup.dev/kubeup/images/rootfs"
	"kubeup.dev/kubeup/provision/render"
	"kubeup.dev/kubeup/systemd"
)

func TestParseRolesAndFormats(t *testing.T) {
	if r, err := ParseRoles("all"); err != nil || len(r) != 2 {
		t.Errorf("all: %v %v", r, err)
	}
	if _, err := ParseRoles("worker"); err == nil || !strings.Contains(err.Error(), `unknown role "worker" (use master, node or all)`) {
		t.Errorf("worker: %v", err)
	}
	if f, err := ParseFormats("qcow2, raw,qcow2"); err != nil || strings.Join(f, ",") != "qcow2,raw" {
		t.Errorf("formats %v %v", f, err)
	}
	if _, err := ParseFormats("vmdk"); err == nil || !strings.Contains(err.Error(), `unknown image format "vmdk"`) {
		t.Errorf("vmdk: %v", err)
	}
	if _, err := ParseFormats(""); err == nil {
		t.Error("empty format list accepted")
	}
}

func inputs(t *testing.T) roleInputs {
	roles, err := render.Roles()
	if err != nil {
		t.Fatal(err)
	}
	return roleInputs{
		role: components.Node, base: &rootfs.Base{Key: "base1"},
		set:   &artifacts.Set{Artifacts: []*artifacts.Artifact{{Manifest: artifacts.Manifest{Kind: artifacts.KindComponent, Name: "etcd", Key: "k1"}}}},
		agent: []byte("agent"), files: roles[components.Node],
	}
}

// The role key changes with any input and only then: a changed unit
// rebuilds the role image (not the base layer, which has its own key).
func TestRoleKey(t *testing.T) {
	base := inputs(t).key(0)
	if inputs(t).key(0) != base {
		t.Fatal("key is not stable")
	}
	changes := map[string]func(*roleInputs){
		"base layer": func(in *roleInputs) { in.base = &rootfs.Base{Key: "base2"} },
		"artifact":   func(in *roleInputs) { in.set.Artifacts[0].Key = "k2" },
		"agent":      func(in *roleInputs) { in.agent = []byte("agent2") },
		"unit": func(in *roleInputs) {
			units := append([]systemd.Unit(nil), in.files.Units...)
			units[0] = systemd.Service{Description: "changed", ExecStart: "/bin/true"}.Unit(units[0].Name)
			in.files.Units = units
		},
	}
	for name, change := range changes {
		in := inputs(t)
		change(&in)
		if in.key(0) == base {
			t.Errorf("changing the %s does not change the key", name)
		}
	}
	if inputs(t).key(1) == base {
		t.Error("SOURCE_DATE_EPOCH does not change the key")
	}
}

// TestRoleKeyAddonFiles: a master's key covers its addon directory, the
// addons baked in and the README.
func TestRoleKeyAddonFiles(t *testing.T) {
	master := func() roleInputs {
		in := inputs(t)
		in.role, in.addonsBin = components.Master, []byte("addons")
		return in
	}
	base := master().key(0)
	in := master()
	in.addons = []components.File{{Path: "x.yaml", Content: []byte("a")}}
	if in.key(0) == base {
		t.Error("changing the addons does not change the key")
	}
	defer func(s string) { imageAddonReadme = s }(imageAddonReadme)
	imageAddonReadme += "changed\n"
	if master().key(0) == base {
		t.Error("changing the addon directory's README does not change the key")
	}
}

func TestUpToDate(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "img.qcow2"), []byte("1234"), 0o644)
	m := Manifest{SchemaVersion: SchemaVersion, Key: "k", Files: []OutputFile{{Format: "qcow2", Name: "img.qcow2", Size: 4}}}
	data, _ := json.Marshal(m)
	path := filepath.Join(dir, "m.json")
	os.WriteFile(path, data, 0o644)
	if upToDate(path, "k", []string{"qcow2"}, dir) == nil {
		t.Error("same key and files: not up to date")
	}
	if upToDate(path, "other", []string{"qcow2"}, dir) != nil {
		t.Error("different key: up to date")
	}
	if upToDate(path, "k", []string{"qcow2", "raw"}, dir) != nil {
		t.Error("missing format: up to date")
	}
	os.WriteFile(filepath.Join(dir, "img.qcow2"), []byte("12"), 0o644)
	if upToDate(path, "k", []string{"qcow2"}, dir) != nil {
		t.Error("truncated file: up to date")
	}
}

func TestCheckFree(t *testing.T) {
	if err := checkFree(t.TempDir()); err != nil && !strings.Contains(err.Error(), "MiB free") {
		t.Errorf("unexpected error %v", err)
	}
	if err := checkFree("/nonexistent/dir"); err == nil {
		t.Error("no error for a missing directory")
	}
}

// TestInstallAddonDir: a master image has ImageAddonDir even with no
// manifest baked in (the addon manager refuses to prune while a manifest
// directory is missing); a node image has none.
func TestInstallAddonDir(t *testing.T) {
	for _, tc := range []struct {
		role components.Role
		want bool
	}{{components.Master, true}, {components.Node, false}} {
		root := t.TempDir()
		for _, u := range []string{"systemd-networkd.service", "systemd-resolved.service", components.RoleTarget(tc.role)} {
			p := filepath.Join(root, "lib/systemd/system", u)
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		in := roleInputs{role: tc.role, set: &artifacts.Set{}, agent: []byte("agent"), probe: []byte("probe")}
		if tc.role == components.Master {
			in.addonsBin = []byte("addons")
		}
		if err := install(root, in, &Manifest{}); err != nil {
			t.Fatalf("%s: %v", tc.role, err)
		}
		readme := filepath.Join(root, components.ImageAddonDir, "README")
		data, err := os.ReadFile(readme)
		switch {
		case tc.want && err != nil:
			t.Errorf("%s image: %v", tc.role, err)
		case tc.want && !strings.Contains(string(data), components.AddonModeLabel):
			t.Errorf("%s image: README does not name the mode label:\n%s", tc.role, data)
		case !tc.want && err == nil:
			t.Errorf("%s image has %s", tc.role, readme)
		}
	}
}

// The clouds show the serial console (EC2's get-console-output, GCE's
// serial port 1): the kernel and systemd must write there.
func TestSerialConsole(t *testing.T) {
	if !strings.Contains(cmdline, "console=ttyS0") {
		t.Errorf("kernel command line %q has no serial console", cmdline)
	}
}

// A role's key changes with the images it preloads: an image taken out of
// (or put into) a role through imageRoles rebuilds that role's image.
func TestRoleKeyPreloads(t *testing.T) {
	in := inputs(t)
	in.set.Artifacts = append(in.set.Artifacts, &artifacts.Artifact{Manifest: artifacts.Manifest{Kind: artifacts.KindImage, Name: "prometheus", Key: "p1"}})
	both := in.key(0)
	saved := imageRoles
	t.Cleanup(func() { imageRoles = saved })
	imageRoles = map[string]components.Role{"prometheus": components.Master}
	if len(in.preloads()) != 0 {
		t.Fatalf("node preloads %v with prometheus for masters only", in.preloads())
	}
	if in.key(0) == both {
		t.Error("taking an image out of the node's preloads does not change its key")
	}
}
