package render

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/cloudinit"
	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/provision/pki"
)

// Layout of a render directory (documented in the README):
//
//	cluster.yaml                 the config with every default filled in
//	certificates.txt             the certificate table
//	admin.kubeconfig             cluster-admin credentials (0600)
//	machines/<name>/user-data    #cloud-config as the target receives it
//	machines/<name>/meta-data
//	machines/<name>/network-config   (local target)
//	machines/<name>/seed.iso     NoCloud seed (volume cidata) of the three
//	roles/<role>/units/<unit>    what the role's image carries in /etc/systemd/system
//	roles/<role>/files/<path>    static files the role's image carries
const (
	MachinesDir = "machines"
	RolesDir    = "roles"
)

// WriteDir writes the render into dir. Everything is written into a
// temporary directory inside dir first and each top-level entry is then
// renamed into place, so a failed render leaves dir's previous content, and
// entries of dir that are not part of a render (its pki/ state, anything
// else) are left alone.
func (r *Result) WriteDir(dir string) (err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", dir, err)
	}
	tmp, err := os.MkdirTemp(dir, ".render-*")
	if err != nil {
		return fmt.Errorf("create temporary render directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := r.write(tmp); err != nil {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		dst := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err := os.RemoveAll(dst); err != nil {
				return fmt.Errorf("replace %s: %w", dst, err)
			}
		}
		if err := os.Rename(filepath.Join(tmp, e.Name()), dst); err != nil {
			return fmt.Errorf("replace %s: %w", dst, err)
		}
	}
	return nil
}

func (r *Result) write(dir string) error {
	cfg, err := yaml.Marshal(r.Config)
	if err != nil {
		return fmt.Errorf("marshal cluster config: %w", err)
	}
	var table bytes.Buffer
	if err := pki.WriteTable(&table, r.PKI.Specs); err != nil {
		return err
	}
	admin, err := r.PKI.Kubeconfig("admin", r.Cluster.APIServerEndpoint, true)
	if err != nil {
		return err
	}
	files := []components.File{
		{Path: "cluster.yaml", Mode: 0o644, Content: append([]byte("# Effective config: every default filled in, rendered by kubeup.\n"), cfg...)},
		{Path: "certificates.txt", Mode: 0o644, Content: table.Bytes()},
		{Path: "admin.kubeconfig", Mode: 0o600, Content: admin},
	}
	for _, m := range r.Machines {
		d := filepath.Join(MachinesDir, m.Name)
		files = append(files,
			components.File{Path: filepath.Join(d, "user-data"), Mode: 0o600, Content: m.UserData},
			components.File{Path: filepath.Join(d, "meta-data"), Mode: 0o644, Content: m.MetaData})
		if m.NetworkConfig != nil {
			files = append(files, components.File{Path: filepath.Join(d, "network-config"), Mode: 0o644, Content: m.NetworkConfig})
		}
	}
	roles, err := Roles()
	if err != nil {
		return err
	}
	for role, rf := range roles {
		for _, u := range rf.Units {
			data, err := u.Bytes()
			if err != nil {
				return err
			}
			files = append(files, components.File{Path: filepath.Join(RolesDir, string(role), "units", u.Name), Mode: 0o644, Content: data})
		}
		for _, f := range rf.Files {
			files = append(files, components.File{Path: filepath.Join(RolesDir, string(role), "files", strings.TrimPrefix(f.Path, "/")), Mode: f.Mode, Content: f.Content})
		}
	}
	for _, f := range files {
		p := filepath.Join(dir, f.Path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Content, f.Mode); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
	}
	for _, m := range r.Machines {
		seed := cloudinit.Seed{UserData: m.UserData, MetaData: m.MetaData, NetworkConfig: m.NetworkConfig}
		if err := cloudinit.WriteSeed(filepath.Join(dir, MachinesDir, m.Name, "seed.iso"), seed); err != nil {
			return err
		}
	}
	return nil
}
