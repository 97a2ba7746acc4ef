package components

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"kubeup.dev/kubeup/systemd"
)

// RoleUnits returns a role's units: every component's (a scheduled one's
// service and timer), then the role target that wants them all (the timer,
// not the service, of a scheduled one). These are what the role's image
// carries.
func RoleUnits(r Role) []systemd.Unit {
	var units []systemd.Unit
	var wants []string
	for _, c := range ForRole(r) {
		units = append(units, c.Unit(r))
		if s, ok := c.(Scheduled); ok {
			units = append(units, s.Timer(r))
		}
		wants = append(wants, ActiveUnit(c))
	}
	for _, u := range units {
		if u.Value("Service", "Slice") == ControlPlaneSlice {
			units = append(units, controlPlaneSlice())
			break
		}
	}
	t := systemd.Target{
		Description: fmt.Sprintf("kubeup %s: every component of the %s role", r, r),
		Wants:       wants,
		After:       []string{"network-online.target", "cloud-init.service"},
		WantedBy:    []string{"multi-user.target"},
	}
	return append(units, t.Unit(RoleTarget(r)))
}

// RoleImageFiles are the static files a role's image carries besides units,
// sorted by path.
func RoleImageFiles(r Role) ([]File, error) {
	var files []File
	for _, c := range ForRole(r) {
		files = append(files, c.ImageFiles()...)
	}
	if err := SortFiles(files); err != nil {
		return nil, fmt.Errorf("%s image files: %w", r, err)
	}
	return files, nil
}

// MachineFiles renders every machine-specific file of a machine's components:
// each component's env file (its flags) and config files, sorted by path.
func MachineFiles(ctx Context) ([]File, error) {
	var files []File
	for _, c := range ForRole(ctx.Machine.Role) {
		var vars map[string]string
		if ev, ok := c.(EnvVarser); ok {
			vars = ev.EnvVars(ctx)
		}
		env, err := EnvFileContent(c.Name(), ctx.Machine.Name, c.Flags(ctx), vars)
		if err != nil {
			return nil, err
		}
		// 0600 as CIS asks of a component's "pod specification" (1.1.1,
		// ...): it holds no secret, but only systemd (root) reads it.
		files = append(files, File{Path: EnvFile(c.Name()), Mode: 0o600, Content: env})
		more, err := c.Files(ctx)
		if err != nil {
			return nil, fmt.Errorf("render %s for %s: %w", c.Name(), ctx.Machine.Name, err)
		}
		files = append(files, more...)
	}
	if err := SortFiles(files); err != nil {
		return nil, fmt.Errorf("files of %s: %w", ctx.Machine.Name, err)
	}
	return files, nil
}

// ErrPathTwice: two files of one machine or image have the same path.
var ErrPathTwice = errors.New("written twice")

// SortFiles sorts files by path in place and refuses a path that two of
// them write (naming it), so that no file silently replaces another.
func SortFiles(files []File) error {
	slices.SortFunc(files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	for i := 1; i < len(files); i++ {
		if files[i].Path == files[i-1].Path {
			return fmt.Errorf("%s is %w", files[i].Path, ErrPathTwice)
		}
	}
	return nil
}
