package cloudinit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// Header is the first line of every cloud-config document; cloud-init ignores user-data that does not start with it.
const Header = "#cloud-config\n"

// Config is a cloud-config document. Zero values mean "leave cloud-init's default"; pointers are used where the
// default differs from the Go zero value and the caller may want to state either value explicitly.
type Config struct {
	// Hostname sets the system hostname (cc_set_hostname, cc_update_hostname).
	Hostname string
	// FQDN sets the fully qualified domain name.
	FQDN string
	// PreferFQDNOverHostname makes cloud-init set the hostname to FQDN when both are given.
	PreferFQDNOverHostname *bool
	// ManageEtcHosts selects how cloud-init maintains /etc/hosts; empty leaves the key out (cloud-init: unmanaged).
	ManageEtcHosts EtcHosts

	// DefaultUser keeps the distribution's default user: "default" is listed first in users. Note that when
	// DefaultUser is false and Users is empty the users key is left out, and cloud-init then creates the default
	// user anyway; when Users is non-empty and DefaultUser is false, only Users are created.
	DefaultUser bool
	// Users are created in this order.
	Users []User
	// SSHAuthorizedKeys are added to the default user's authorized_keys.
	SSHAuthorizedKeys []string
	// SSHPasswordAuth sets ssh_pwauth (sshd PasswordAuthentication); nil leaves sshd's setting unchanged.
	SSHPasswordAuth *bool
	// DisableRoot sets disable_root; nil means cloud-init's default (true: root login over ssh refused).
	DisableRoot *bool

	// Growpart configures partition growing (cc_growpart); nil means cloud-init's default (grow "/").
	Growpart *Growpart
	// ResizeRootFS sets resize_rootfs; nil means cloud-init's default (true).
	ResizeRootFS *bool

	// BootCmd runs on every boot, very early. Each entry is an argv; cloud-init quotes it, no shell syntax.
	BootCmd [][]string
	// Files are written in the order given (the caller decides the order).
	Files []File
	// PackageUpdate and PackageUpgrade are always rendered, so a config states explicitly whether apt runs at
	// boot; kubeup images are built complete, so both are normally false.
	PackageUpdate  bool
	PackageUpgrade bool
	// RunCmd runs once, late in the first boot. Each entry is an argv; cloud-init quotes it, no shell syntax.
	RunCmd [][]string
	// FinalMessage is logged when cloud-init finishes.
	FinalMessage string
}

// EtcHosts is a manage_etc_hosts mode.
type EtcHosts string

const (
	// EtcHostsUnset leaves manage_etc_hosts out (cloud-init does not touch /etc/hosts).
	EtcHostsUnset EtcHosts = ""
	// EtcHostsTemplate renders /etc/hosts from cloud-init's template on every boot (manage_etc_hosts: true).
	EtcHostsTemplate EtcHosts = "template"
	// EtcHostsLocalhost only keeps an entry for the hostname pointing at 127.0.1.1 (manage_etc_hosts: localhost).
	EtcHostsLocalhost EtcHosts = "localhost"
)

// User is one entry of cloud-config's users list.
type User struct {
	// Name is the login name (required).
	Name string
	// Groups are supplementary groups; they must exist already.
	Groups []string
	// Shell is the login shell, e.g. /bin/bash.
	Shell string
	// Sudo is a sudoers rule such as "ALL=(ALL) NOPASSWD:ALL"; empty grants no sudo.
	Sudo string
	// LockPasswd locks the password; nil means cloud-init's default (true).
	LockPasswd *bool
	// SSHAuthorizedKeys are this user's authorized keys.
	SSHAuthorizedKeys []string
}

// File is one entry of write_files.
type File struct {
	// Path is the absolute destination path.
	Path string
	// Content is written verbatim. Text is rendered as a readable YAML string; content that is not printable
	// UTF-8 text is rendered base64-encoded (encoding: b64).
	Content []byte
	// Owner is "user:group"; empty means "root:root".
	Owner string
	// Mode holds the permission bits (setuid, setgid and sticky included); zero means 0644.
	Mode os.FileMode
	// Defer writes the file in the final stage, after users and packages exist (write_files' defer).
	Defer bool
}

// GrowpartMode is growpart's mode.
type GrowpartMode string

const (
	GrowpartAuto     GrowpartMode = "auto"
	GrowpartGrowpart GrowpartMode = "growpart"
	GrowpartGpart    GrowpartMode = "gpart"
	GrowpartOff      GrowpartMode = "off"
)

// Growpart configures cc_growpart.
type Growpart struct {
	// Mode; empty means cloud-init's default (auto).
	Mode GrowpartMode
	// Devices are mount points or block devices to grow; empty means cloud-init's default ("/").
	Devices []string
	// IgnoreGrowrootDisabled grows even when /etc/growroot-disabled exists.
	IgnoreGrowrootDisabled bool
}

// The wire types below give the key names and their order in the rendered document.

type configWire struct {
	Hostname               string        `yaml:"hostname,omitempty"`
	FQDN                   string        `yaml:"fqdn,omitempty"`
	PreferFQDNOverHostname *bool         `yaml:"prefer_fqdn_over_hostname,omitempty"`
	ManageEtcHosts         any           `yaml:"manage_etc_hosts,omitempty"`
	Users                  []any         `yaml:"users,omitempty"`
	SSHAuthorizedKeys      []string      `yaml:"ssh_authorized_keys,omitempty"`
	SSHPasswordAuth        *bool         `yaml:"ssh_pwauth,omitempty"`
	DisableRoot            *bool         `yaml:"disable_root,omitempty"`
	Growpart               *growpartWire `yaml:"growpart,omitempty"`
	ResizeRootFS           *bool         `yaml:"resize_rootfs,omitempty"`
	BootCmd                []argv        `yaml:"bootcmd,omitempty"`
	WriteFiles             []fileWire    `yaml:"write_files,omitempty"`
	PackageUpdate          bool          `yaml:"package_update"`
	PackageUpgrade         bool          `yaml:"package_upgrade"`
	RunCmd                 []argv        `yaml:"runcmd,omitempty"`
	FinalMessage           string        `yaml:"final_message,omitempty"`
}

type userWire struct {
	Name              string   `yaml:"name"`
	Groups            []string `yaml:"groups,omitempty"`
	Shell             string   `yaml:"shell,omitempty"`
	Sudo              string   `yaml:"sudo,omitempty"`
	LockPasswd        *bool    `yaml:"lock_passwd,omitempty"`
	SSHAuthorizedKeys []string `yaml:"ssh_authorized_keys,omitempty"`
}

type fileWire struct {
	Path        string `yaml:"path"`
	Encoding    string `yaml:"encoding,omitempty"`
	Content     string `yaml:"content"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
	Defer       bool   `yaml:"defer,omitempty"`
}

type growpartWire struct {
	Mode                   GrowpartMode `yaml:"mode,omitempty"`
	Devices                []string     `yaml:"devices,omitempty"`
	IgnoreGrowrootDisabled bool         `yaml:"ignore_growroot_disabled,omitempty"`
}

// argv renders as a one-line flow sequence ([systemctl, start, etcd]), which reads like the command it is.
type argv []string

func (a argv) MarshalYAML() (any, error) {
	var n yaml.Node
	if err := n.Encode([]string(a)); err != nil {
		return nil, err
	}
	n.Style = yaml.FlowStyle
	return &n, nil
}

// Render validates c and returns the user-data document: "#cloud-config\n" followed by YAML. The output depends only
// on c. All validation problems are reported at once, each prefixed with its field path.
func (c *Config) Render() ([]byte, error) {
	w, err := c.wire()
	if err != nil {
		return nil, fmt.Errorf("render cloud-config: %w", err)
	}
	body, err := marshalYAML(w)
	if err != nil {
		return nil, fmt.Errorf("render cloud-config: %w", err)
	}
	return append([]byte(Header), body...), nil
}

func (c *Config) wire() (*configWire, error) {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	w := &configWire{
		Hostname:               c.Hostname,
		FQDN:                   c.FQDN,
		PreferFQDNOverHostname: c.PreferFQDNOverHostname,
		SSHAuthorizedKeys:      c.SSHAuthorizedKeys,
		SSHPasswordAuth:        c.SSHPasswordAuth,
		DisableRoot:            c.DisableRoot,
		ResizeRootFS:           c.ResizeRootFS,
		PackageUpdate:          c.PackageUpdate,
		PackageUpgrade:         c.PackageUpgrade,
		FinalMessage:           c.FinalMessage,
	}
	if strings.ContainsFunc(c.Hostname, unicode.IsSpace) {
		bad("hostname", "%q contains whitespace", c.Hostname)
	}
	if strings.ContainsFunc(c.FQDN, unicode.IsSpace) {
		bad("fqdn", "%q contains whitespace", c.FQDN)
	}

	switch c.ManageEtcHosts {
	case EtcHostsUnset:
	case EtcHostsTemplate:
		w.ManageEtcHosts = true // the string "template" is deprecated in cloud-init's schema
	case EtcHostsLocalhost:
		w.ManageEtcHosts = string(EtcHostsLocalhost)
	default:
		bad("manage_etc_hosts", "unknown mode %q", c.ManageEtcHosts)
	}

	if c.DefaultUser {
		w.Users = append(w.Users, "default")
	}
	for i, u := range c.Users {
		field := fmt.Sprintf("users[%d]", i)
		if u.Name == "" {
			bad(field+".name", "must not be empty")
		} else if u.Name == "default" {
			bad(field+".name", `"default" is reserved: set Config.DefaultUser instead`)
		}
		for j, k := range u.SSHAuthorizedKeys {
			checkKey(fmt.Sprintf("%s.ssh_authorized_keys[%d]", field, j), k, bad)
		}
		w.Users = append(w.Users, userWire{
			Name:              u.Name,
			Groups:            u.Groups,
			Shell:             u.Shell,
			Sudo:              u.Sudo,
			LockPasswd:        u.LockPasswd,
			SSHAuthorizedKeys: u.SSHAuthorizedKeys,
		})
	}
	for i, k := range c.SSHAuthorizedKeys {
		checkKey(fmt.Sprintf("ssh_authorized_keys[%d]", i), k, bad)
	}

	if g := c.Growpart; g != nil {
		switch g.Mode {
		case "", GrowpartAuto, GrowpartGrowpart, GrowpartGpart, GrowpartOff:
		default:
			bad("growpart.mode", "unknown mode %q", g.Mode)
		}
		w.Growpart = &growpartWire{Mode: g.Mode, Devices: g.Devices, IgnoreGrowrootDisabled: g.IgnoreGrowrootDisabled}
	}

	w.BootCmd = commands("bootcmd", c.BootCmd, bad)
	w.RunCmd = commands("runcmd", c.RunCmd, bad)

	for i, f := range c.Files {
		fw, err := f.wire()
		if err != nil {
			errs = append(errs, fmt.Errorf("write_files[%d]: %w", i, err))
			continue
		}
		w.WriteFiles = append(w.WriteFiles, fw)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return w, nil
}

func checkKey(field, key string, bad func(field, format string, args ...any)) {
	if strings.TrimSpace(key) == "" {
		bad(field, "must not be empty")
	} else if strings.ContainsAny(key, "\r\n") {
		bad(field, "must be a single line") // one key per authorized_keys line
	}
}

func commands(field string, cmds [][]string, bad func(field, format string, args ...any)) []argv {
	out := make([]argv, 0, len(cmds))
	for i, c := range cmds {
		if len(c) == 0 || c[0] == "" {
			bad(fmt.Sprintf("%s[%d]", field, i), "empty command")
		}
		out = append(out, argv(c))
	}
	return out
}

func (f File) wire() (fileWire, error) {
	if f.Path == "" {
		return fileWire{}, errors.New("path: must not be empty")
	}
	if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
		return fileWire{}, fmt.Errorf("path: %q must be absolute and clean", f.Path)
	}
	if f.Mode&0o7000 != 0 {
		// os.FileMode keeps setuid/setgid/sticky in high bits; 0o4755 silently loses its setuid bit in Perm().
		return fileWire{}, fmt.Errorf("mode: %#o: use os.ModeSetuid, os.ModeSetgid, os.ModeSticky instead of the 0o7000 bits", uint32(f.Mode))
	}
	if f.Mode&^(os.ModePerm|os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
		return fileWire{}, fmt.Errorf("mode: %v is not a regular file mode", f.Mode)
	}
	w := fileWire{
		Path:        f.Path,
		Owner:       f.Owner,
		Permissions: Permissions(f.Mode),
		Defer:       f.Defer,
	}
	if w.Owner == "" {
		w.Owner = "root:root"
	}
	if isText(f.Content) {
		w.Content = string(f.Content)
	} else {
		w.Encoding = "b64"
		w.Content = base64.StdEncoding.EncodeToString(f.Content)
	}
	return w, nil
}

// Permissions formats a file mode the way write_files expects it: a four-digit octal string such as "0600" (a
// string, because cloud-init's schema rejects YAML integers there). Zero means 0644.
func Permissions(m os.FileMode) string {
	if m == 0 {
		m = 0o644
	}
	bits := uint32(m.Perm())
	if m&os.ModeSetuid != 0 {
		bits |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		bits |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		bits |= 0o1000
	}
	return fmt.Sprintf("%04o", bits)
}

// isText reports whether b can be carried as a YAML string and read back unchanged: valid UTF-8 of printable
// characters, newlines and tabs only, and surviving a YAML round trip (so no reliance on emitter corner cases).
func isText(b []byte) bool {
	if !utf8.Valid(b) {
		return false
	}
	s := string(b)
	for _, r := range s {
		if r != '\n' && r != '\t' && !unicode.IsPrint(r) {
			return false
		}
	}
	out, err := yaml.Marshal(s)
	if err != nil {
		return false
	}
	var back string
	return yaml.Unmarshal(out, &back) == nil && back == s
}

func marshalYAML(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
