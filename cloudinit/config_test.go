package cloudinit

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"kubeup.dev/kubeup/test/golden"
)

// binaryBlob is not valid UTF-8 and has NUL bytes, so it must be rendered base64-encoded.
var binaryBlob = []byte{0x00, 0xff, 0xfe, 0x1f, 0x8b, 'k', 'u', 'b', 'e', 0x00, 0x80, '\n'}

func exampleConfig() *Config {
	return &Config{
		Hostname:               "master-0",
		FQDN:                   "master-0.cluster.internal",
		PreferFQDNOverHostname: new(false),
		ManageEtcHosts:         EtcHostsLocalhost,
		DefaultUser:            true,
		Users: []User{{
			Name:              "kubeup",
			Groups:            []string{"adm", "systemd-journal"},
			Shell:             "/bin/bash",
			Sudo:              "ALL=(ALL) NOPASSWD:ALL",
			LockPasswd:        new(true),
			SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKubeupTestKeyOnlyNotARealKey000000000000 kubeup@test"},
		}},
		SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDefaultUserTestKeyNotReal0000000000000000 admin@test"},
		SSHPasswordAuth:   new(false),
		DisableRoot:       new(true),
		Growpart: &Growpart{
			Mode:                   GrowpartAuto,
			Devices:                []string{"/"},
			IgnoreGrowrootDisabled: false,
		},
		ResizeRootFS: new(true),
		BootCmd:      [][]string{{"mkdir", "-p", "/var/lib/kubeup"}},
		Files: []File{
			{Path: "/etc/kubeup/node.env", Content: []byte("ROLE=master\nNAME=master-0\n"), Mode: 0o644},
			{Path: "/etc/kubeup/pki/ca.key", Content: []byte("-----BEGIN EC PRIVATE KEY-----\nnot-a-real-key\n-----END EC PRIVATE KEY-----\n"), Mode: 0o600},
			{Path: "/var/lib/kubeup/blob.bin", Content: binaryBlob, Owner: "kubeup:kubeup", Mode: 0o640, Defer: true},
			{Path: "/usr/local/bin/hello", Content: []byte("#!/bin/sh\necho 'hello: world' \"$1\"\n"), Mode: 0o755},
		},
		RunCmd: [][]string{
			{"systemctl", "daemon-reload"},
			{"systemctl", "enable", "--now", "etcd.service"},
			{"sh", "-c", "echo 'quoted: yes' > /run/kubeup-ready"},
			{"true"},
		},
		FinalMessage: "kubeup node ready after $UPTIME seconds",
	}
}

func TestRenderGolden(t *testing.T) {
	out, err := exampleConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	golden.Assert(t, "user-data", out)
	checkCloudConfig(t, out)

	// Deterministic: rendering again gives the same bytes.
	again, err := exampleConfig().Render()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, again) {
		t.Error("two renders of the same Config differ")
	}
}

func TestRenderMinimal(t *testing.T) {
	out, err := (&Config{}).Render()
	if err != nil {
		t.Fatal(err)
	}
	want := "#cloud-config\npackage_update: false\npackage_upgrade: false\n"
	if string(out) != want {
		t.Errorf("got %q, want %q", out, want)
	}
	checkCloudConfig(t, out)
}

// TestFileContentRoundTrip checks that every kind of content comes back byte for byte after YAML parsing and
// base64 decoding, the way cloud-init reads write_files.
func TestFileContentRoundTrip(t *testing.T) {
	contents := map[string][]byte{
		"empty":               {},
		"no-trailing-newline": []byte("a=b"),
		"many-newlines":       []byte("a\n\n\n"),
		"leading-spaces":      []byte("   indented\n  first\n"),
		"trailing-spaces":     []byte("line with trailing space   \n\t\ttabs\t\n"),
		"yaml-looking":        []byte("---\n#cloud-config\nkey: [1, 2]\n- item\n...\n"),
		"only-space":          []byte(" "),
		"unicode":             []byte("grüße ✓ 日本 🚀\n"),
		"line-separator":      []byte("a\u2028b\n"),
		"next-line":           []byte("a\u0085b\n"),
		"private-use":         []byte("a\ue000b\n"),
		"crlf":                []byte("windows\r\nline\r\n"),
		"nul":                 []byte("a\x00b"),
		"escape":              []byte("\x1b[31mred\x1b[0m\n"),
		"bom":                 []byte("\ufeffbom\n"),
		"binary":              binaryBlob,
		"octal-looking":       []byte("0600"),
		"bool-looking":        []byte("yes"),
	}
	var c Config
	var names []string
	for name, content := range contents {
		names = append(names, name)
		c.Files = append(c.Files, File{Path: "/tmp/" + name, Content: content})
	}
	out, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	var parsed struct {
		WriteFiles []fileWire `yaml:"write_files"`
	}
	if err := yaml.Unmarshal(out, &parsed); err != nil {
		t.Fatalf("rendered user-data is not YAML: %v\n%s", err, out)
	}
	if len(parsed.WriteFiles) != len(c.Files) {
		t.Fatalf("got %d files back, want %d", len(parsed.WriteFiles), len(c.Files))
	}
	for i, fw := range parsed.WriteFiles {
		name := names[i]
		got := []byte(fw.Content)
		switch fw.Encoding {
		case "":
		case "b64":
			got, err = base64.StdEncoding.DecodeString(fw.Content)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
		default:
			t.Fatalf("%s: unexpected encoding %q", name, fw.Encoding)
		}
		if !bytes.Equal(got, contents[name]) {
			t.Errorf("%s: got %q back, want %q", name, got, contents[name])
		}
		wantB64 := map[string]bool{
			"crlf": true, "nul": true, "escape": true, "bom": true, "binary": true,
			"line-separator": true, "next-line": true, "private-use": true,
		}[name]
		if (fw.Encoding == "b64") != wantB64 {
			t.Errorf("%s: encoding %q, want b64=%v", name, fw.Encoding, wantB64)
		}
		if fw.Permissions != "0644" || fw.Owner != "root:root" {
			t.Errorf("%s: defaults: permissions %q owner %q", name, fw.Permissions, fw.Owner)
		}
	}
	checkCloudConfig(t, out)

	// cloud-init itself (its YAML loader and write_files decoding) must read the same bytes and modes.
	read := cloudInitRead(t, out)
	if len(read.Files) != len(c.Files) {
		t.Fatalf("cloud-init read %d files, want %d", len(read.Files), len(c.Files))
	}
	for i, f := range read.Files {
		if f.Path != c.Files[i].Path || !bytes.Equal(f.Content, c.Files[i].Content) || f.Perms != 0o644 {
			t.Errorf("cloud-init read %s as %q mode %o, want %q mode 644", f.Path, f.Content, f.Perms, c.Files[i].Content)
		}
	}
}

func TestCloudInitReadsGolden(t *testing.T) {
	c := exampleConfig()
	out, err := c.Render()
	if err != nil {
		t.Fatal(err)
	}
	read := cloudInitRead(t, out)
	if len(read.Files) != len(c.Files) {
		t.Fatalf("cloud-init read %d files, want %d", len(read.Files), len(c.Files))
	}
	for i, f := range read.Files {
		want := c.Files[i]
		owner := want.Owner
		if owner == "" {
			owner = "root:root"
		}
		if f.Path != want.Path || !bytes.Equal(f.Content, want.Content) || f.Perms != uint32(want.Mode.Perm()) ||
			f.Owner != owner || f.Defer != want.Defer {
			t.Errorf("cloud-init read file %d as %+v, want %+v", i, f, want)
		}
	}
	if !slices.EqualFunc(read.RunCmd, c.RunCmd, slices.Equal) {
		t.Errorf("cloud-init read runcmd %q, want %q", read.RunCmd, c.RunCmd)
	}
	if !slices.EqualFunc(read.BootCmd, c.BootCmd, slices.Equal) {
		t.Errorf("cloud-init read bootcmd %q, want %q", read.BootCmd, c.BootCmd)
	}
	// cloud-init turns each argv into one shell line, single-quoting every word; sh must split it back.
	for i, line := range strings.Split(strings.TrimSuffix(read.RunCmdScript, "\n"), "\n")[1:] {
		argvOut, err := exec.Command("sh", "-c", "set -- "+line+`; for a in "$@"; do printf '%s\0' "$a"; done`).Output()
		if err != nil {
			t.Fatalf("runcmd line %q: %v", line, err)
		}
		args := strings.Split(strings.TrimSuffix(string(argvOut), "\x00"), "\x00")
		if !slices.Equal(args, c.RunCmd[i]) {
			t.Errorf("runcmd line %q splits into %q, want %q", line, args, c.RunCmd[i])
		}
	}
	wantUsers := []any{"default", map[string]any{
		"name": "kubeup", "groups": []any{"adm", "systemd-journal"}, "shell": "/bin/bash",
		"sudo": "ALL=(ALL) NOPASSWD:ALL", "lock_passwd": true,
		"ssh_authorized_keys": []any{c.Users[0].SSHAuthorizedKeys[0]},
	}}
	if !reflect.DeepEqual(read.Users, wantUsers) {
		t.Errorf("cloud-init read users %#v, want %#v", read.Users, wantUsers)
	}
}

// cloudInitView is what cloud-init's own code makes of a user-data document.
type cloudInitView struct {
	Files []struct {
		Path    string `json:"path"`
		Content []byte `json:"content"` // base64 in JSON
		Perms   uint32 `json:"perms"`
		Owner   string `json:"owner"`
		Defer   bool   `json:"defer"`
	} `json:"files"`
	RunCmd       [][]string `json:"runcmd"`
	BootCmd      [][]string `json:"bootcmd"`
	RunCmdScript string     `json:"runcmd_script"`
	Users        []any      `json:"users"`
}

// cloudInitRead parses user-data with cloud-init's Python code: its YAML loader, cc_write_files' decoding of
// content and permissions, and util.shellify for runcmd.
func cloudInitRead(t *testing.T, userData []byte) cloudInitView {
	t.Helper()
	python := cloudInitPython(t, needTool(t, "cloud-init", "cloud-init"))
	p := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(p, userData, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(python, "-c", `
import base64, json, sys
from cloudinit import util
from cloudinit.config import cc_write_files as wf
cfg = util.load_yaml(open(sys.argv[1], "rb").read())
files = []
for f in cfg.get("write_files", []):
    c = wf.extract_contents(f.get("content", ""), wf.canonicalize_extraction(f.get("encoding")))
    if isinstance(c, str):
        c = c.encode("utf-8")
    files.append({"path": f["path"], "content": base64.b64encode(c).decode(),
                  "perms": wf.decode_perms(f.get("permissions"), wf.DEFAULT_PERMS),
                  "owner": f.get("owner", "root:root"), "defer": bool(f.get("defer", False))})
print(json.dumps({"files": files, "runcmd": cfg.get("runcmd"), "bootcmd": cfg.get("bootcmd"),
                  "runcmd_script": util.shellify(cfg.get("runcmd", [])), "users": cfg.get("users")}))
`, p).Output()
	if err != nil {
		t.Fatalf("cloud-init's parser: %v\n%s", err, exitStderr(err))
	}
	var v cloudInitView
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return v
}

func exitStderr(err error) []byte {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.Stderr
	}
	return nil
}

func TestPermissions(t *testing.T) {
	for mode, want := range map[os.FileMode]string{
		0:                                     "0644",
		0o600:                                 "0600",
		0o755:                                 "0755",
		0o755 | os.ModeSetuid:                 "4755",
		0o775 | os.ModeSetgid:                 "2775",
		0o777 | os.ModeSticky:                 "1777",
		0o750 | os.ModeSetuid | os.ModeSetgid: "6750",
	} {
		if got := Permissions(mode); got != want {
			t.Errorf("Permissions(%v) = %q, want %q", mode, got, want)
		}
	}
}

func TestRenderValidation(t *testing.T) {
	c := &Config{
		Hostname:       "bad name",
		ManageEtcHosts: "sometimes",
		Users:          []User{{Name: ""}, {Name: "default"}, {Name: "x", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA\nssh-rsa BBBB"}}},
		Growpart:       &Growpart{Mode: "fast"},
		BootCmd:        [][]string{{}},
		RunCmd:         [][]string{{"ok"}, {""}},
		Files: []File{
			{Path: "relative/path"},
			{Path: "/etc/../etc/x"},
			{Path: ""},
			{Path: "/dev/x", Mode: os.ModeDevice | 0o600},
			{Path: "/usr/bin/x", Mode: 0o4755},
		},
	}
	_, err := c.Render()
	if err == nil {
		t.Fatal("Render accepted an invalid config")
	}
	for _, want := range []string{
		"hostname:", "manage_etc_hosts:", "users[0].name:", "users[1].name:",
		"users[2].ssh_authorized_keys[0]:", "growpart.mode:", "bootcmd[0]:", "runcmd[1]:",
		"write_files[0]: path:", "write_files[1]: path:", "write_files[2]: path:", "write_files[3]: mode:", "write_files[4]: mode: 04755: use os.ModeSetuid",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "runcmd[0]") {
		t.Errorf("error blames a valid command:\n%v", err)
	}
}

// needTool finds a validation tool. The tests validate with the real tools, so a missing tool fails the test
// unless -short is given.
func needTool(t *testing.T, name, debPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	msg := name + " not found: install Debian package " + debPackage
	if testing.Short() {
		t.Skip(msg)
	}
	t.Fatal(msg)
	return ""
}

// checkCloudConfig validates user-data with cloud-init's own schema validator (cloud-init 22.4 on Debian 12:
// exit status 0 and "Valid cloud-config: FILE" on stdout; schema errors and deprecations exit 1). Because 22.4's
// schema allows unknown top-level keys, it also checks that every top-level key is one the schema defines, so a
// misspelt key cannot pass.
func checkCloudConfig(t *testing.T, userData []byte) {
	t.Helper()
	ci := needTool(t, "cloud-init", "cloud-init")
	if _, err := cloudInitSchema(t, ci, userData); err != nil {
		t.Fatalf("%v\nuser-data:\n%s", err, userData)
	}

	known := schemaKeys(t, ci)
	var doc map[string]any
	if err := yaml.Unmarshal(userData, &doc); err != nil {
		t.Fatal(err)
	}
	for k := range doc {
		if !known[k] {
			t.Errorf("top-level key %q is not defined by cloud-init's schema", k)
		}
	}
}

// cloudInitSchema runs `cloud-init schema --config-file` on doc and returns its output, or an error unless it
// exited 0, printed "Valid cloud-config" and reported no deprecations (22.4 exits 0 for deprecated keys and values,
// printing "Cloud config schema deprecations: ...").
func cloudInitSchema(t *testing.T, cloudInit string, doc []byte) (string, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "user-data")
	if err := os.WriteFile(p, doc, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(cloudInit, "schema", "--config-file", p)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	out := stdout.String() + stderr.String()
	if err != nil {
		return out, fmt.Errorf("cloud-init schema --config-file: %v\n%s", err, out)
	}
	if !strings.Contains(stdout.String(), "Valid cloud-config") {
		return out, fmt.Errorf("cloud-init schema did not say Valid cloud-config:\n%s", out)
	}
	if s := strings.ToLower(out); strings.Contains(s, "deprecat") || strings.Contains(s, "warning") {
		return out, fmt.Errorf("cloud-init schema complains:\n%s", out)
	}
	return out, nil
}

// TestSchemaCheckRejects makes sure the validation harness can fail: cloud-init must reject these documents.
func TestSchemaCheckRejects(t *testing.T) {
	ci := needTool(t, "cloud-init", "cloud-init")
	for name, doc := range map[string]string{
		"integer permissions": Header + "write_files:\n  - path: /x\n    content: a\n    permissions: 0600\n",
		"boolean sudo":        Header + "users:\n  - name: a\n    sudo: false\n", // deprecated in 22.4
		"no header":           "hostname: x\n",
	} {
		if out, err := cloudInitSchema(t, ci, []byte(doc)); err == nil {
			t.Errorf("%s: cloud-init schema accepted it:\n%s", name, out)
		}
	}
}

// schemaKeys returns the property names defined anywhere in cloud-init's cloud-config JSON schema. It runs the
// Python interpreter named in cloud-init's #! line, since that is the one with the cloudinit module.
func schemaKeys(t *testing.T, cloudInit string) map[string]bool {
	t.Helper()
	out, err := exec.Command(cloudInitPython(t, cloudInit), "-c", `
import json
from cloudinit.config.schema import get_schema
keys = set()
def walk(n):
    if isinstance(n, dict):
        keys.update(n.get("properties", {}).keys())
        for v in n.values(): walk(v)
    elif isinstance(n, list):
        for v in n: walk(v)
walk(get_schema())
print("\n".join(sorted(keys)))
`).CombinedOutput()
	if err != nil {
		t.Fatalf("read cloud-init's schema: %v\n%s", err, out)
	}
	keys := map[string]bool{}
	for _, k := range strings.Fields(string(out)) {
		keys[k] = true
	}
	if !keys["write_files"] || !keys["runcmd"] || len(keys) < 100 {
		t.Fatalf("cloud-init's schema looks wrong: %d keys", len(keys))
	}
	return keys
}

// cloudInitPython is the interpreter named in cloud-init's #! line: the one that has the cloudinit module.
func cloudInitPython(t *testing.T, cloudInit string) string {
	t.Helper()
	script, err := os.ReadFile(cloudInit)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := strings.Cut(string(script), "\n")
	python, ok := strings.CutPrefix(first, "#!")
	if !ok {
		t.Fatalf("%s has no #! line", cloudInit)
	}
	return strings.TrimSpace(python)
}
