package components

import (
	"fmt"
	"slices"

	"kubeup.dev/kubeup/systemd"
)

// RoleUnits returns a role's units: every component's, then the role target
// that wants them all. These are what the role's image carries.
func RoleUnits(r Role) []systemd.Unit {
	var units []systemd.Unit
	var wants []string
	for _, c := range ForRole(r) {
		u := c.Unit(r)
		units = append(units, u)
		wants = append(wants, u.Name)
	}
	t := systemd.Target{
		Description: fmt.Sprintf("kubeup %s: every component of the %s role", r, r),
		Wants:       wants,
		After:       []string{"network-online.target", "cloud-init.service"},
		WantedBy:    []string{"multi-user.target"},
	}
	return append(units, t.Unit(RoleTarget(r)))
}

// RoleImageFiles are the static files a role's image carries besides units.
func RoleImageFiles(r Role) []File {
	var files []File
	for _, c := range ForRole(r) {
		files = append(files, c.ImageFiles()...)
	}
	slices.SortFunc(files, func(a, b File) int {
		switch {
		case a.Path < b.Path:
			return -1
		case a.Path > b.Path:
			return 1
		}
		return 0
	})
	return files
}

// MachineFiles renders every machine-specific file of a machine's components:
// each component's env file (its flags) and config files, sorted by path.
func MachineFiles(ctx Context) ([]File, error) {
	var files []File
	for _, c := range ForRole(ctx.Machine.Role) {
		env, err := EnvFileContent(c.Name(), ctx.Machine.Name, c.Flags(ctx))
		if err != nil {
			return nil, err
		}
		files = append(files, File{Path: EnvFile(c.Name()), Mode: 0o644, Content: env})
		more, err := c.Files(ctx)
		if err != nil {
			return nil, fmt.Errorf("render %s for %s: %w", c.Name(), ctx.Machine.Name, err)
		}
		files = append(files, more...)
	}
	slices.SortFunc(files, func(a, b File) int {
		switch {
		case a.Path < b.Path:
			return -1
		case a.Path > b.Path:
			return 1
		}
		return 0
	})
	for i := 1; i < len(files); i++ {
		if files[i].Path == files[i-1].Path {
			return nil, fmt.Errorf("two components write %s", files[i].Path)
		}
	}
	return files, nil
}
