package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"kubeup.dev/kubeup/components/agentconfig"
)

// MachineConfig is GET /v1/config: the machine's configuration as the CIS
// checks (`kubeup verify --cis`) need it, read from the machine itself.
type MachineConfig struct {
	Units []UnitConfig `json:"units"`
	Files []FileInfo   `json:"files"`
}

// UnitConfig is a unit's flags, as its env file gives them.
type UnitConfig struct {
	Unit    string            `json:"unit"`
	EnvFile string            `json:"envFile"`
	Flags   map[string]string `json:"flags"`
	Error   string            `json:"error,omitempty"`
}

// FileInfo is a file's or directory's mode and owner, and for
// configuration files their content.
type FileInfo struct {
	Path    string      `json:"path"`
	Mode    fs.FileMode `json:"mode"` // permission bits
	Dir     bool        `json:"dir,omitempty"`
	UID     uint32      `json:"uid"`
	GID     uint32      `json:"gid"`
	Content *string     `json:"content,omitempty"`
	// Error is why the path could not be read ("not found", ...).
	Error string `json:"error,omitempty"`
}

// Bounds of a report: entries under one path, and a configuration file's
// size.
const (
	maxInspectEntries = 4096
	maxConfigFile     = 1 << 20
)

// InspectMachine reads what in names. It never fails as a whole: a file it
// cannot read is reported with its error.
func InspectMachine(in agentconfig.Inspect) MachineConfig {
	mc := MachineConfig{Units: []UnitConfig{}, Files: []FileInfo{}}
	for _, unit := range sortedKeys(in.EnvFiles) {
		uc := UnitConfig{Unit: unit, EnvFile: in.EnvFiles[unit], Flags: map[string]string{}}
		if data, err := os.ReadFile(uc.EnvFile); err != nil {
			uc.Error = err.Error()
		} else {
			uc.Flags = ParseEnvFlags(data)
		}
		mc.Units = append(mc.Units, uc)
	}
	seen := map[string]bool{}
	add := func(fi FileInfo) {
		if !seen[fi.Path] {
			seen[fi.Path] = true
			mc.Files = append(mc.Files, fi)
		}
	}
	for _, p := range in.ConfigFiles {
		fi := statPath(p)
		if fi.Error == "" && !fi.Dir {
			if data, err := readBounded(p); err != nil {
				fi.Error = err.Error()
			} else {
				s := string(data)
				fi.Content = &s
			}
		}
		add(fi)
	}
	for _, p := range in.Paths {
		n := 0
		err := filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				add(FileInfo{Path: path, Error: errorText(err)})
				return nil
			}
			if n++; n > maxInspectEntries {
				return fs.SkipAll
			}
			add(statPath(path))
			return nil
		})
		if err != nil {
			add(FileInfo{Path: p, Error: errorText(err)})
		}
	}
	slices.SortFunc(mc.Files, func(a, b FileInfo) int { return strings.Compare(a.Path, b.Path) })
	return mc
}

func statPath(p string) FileInfo {
	fi := FileInfo{Path: p}
	info, err := os.Lstat(p)
	if err != nil {
		fi.Error = errorText(err)
		return fi
	}
	fi.Mode, fi.Dir = info.Mode().Perm(), info.IsDir()
	if st, ok := info.Sys().(*syscall.Stat_t); ok {
		fi.UID, fi.GID = st.Uid, st.Gid
	}
	return fi
}

func errorText(err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return "not found"
	}
	return err.Error()
}

func readBounded(p string) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	buf := make([]byte, maxConfigFile+1)
	n, err := f.Read(buf)
	if err != nil && n == 0 {
		return nil, err
	}
	if n > maxConfigFile {
		return nil, fmt.Errorf("larger than %d bytes", maxConfigFile)
	}
	return buf[:n], nil
}

// ParseEnvFlags reads the flags of an env file's ArgsVar assignment, as
// components.EnvFileContent writes it and systemd reads it: lines that end
// in a backslash continue on the next, and the value is split on
// whitespace. A flag without "=" is a boolean set to "true".
func ParseEnvFlags(data []byte) map[string]string {
	flags := map[string]string{}
	joined := strings.ReplaceAll(string(data), "\\\n", " ")
	for _, line := range strings.Split(joined, "\n") {
		value, ok := strings.CutPrefix(strings.TrimSpace(line), agentconfig.ArgsVar+"=")
		if !ok {
			continue
		}
		for _, arg := range strings.Fields(value) {
			name, v, hasValue := strings.Cut(strings.TrimLeft(arg, "-"), "=")
			if !hasValue {
				v = "true"
			}
			flags[name] = v
		}
	}
	return flags
}

func (d *Daemon) serveConfig(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(InspectMachine(d.cfg.Inspect))
}
