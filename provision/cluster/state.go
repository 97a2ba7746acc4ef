package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/infra/qemu"
	"kubeup.dev/kubeup/provision/config"
)

// DefaultDataDir is $KUBEUP_DATA_DIR, else $XDG_DATA_HOME/kubeup, else
// ~/.local/share/kubeup.
func DefaultDataDir() (string, error) {
	if d := os.Getenv("KUBEUP_DATA_DIR"); d != "" {
		return d, nil
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "kubeup"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find the data directory (set KUBEUP_DATA_DIR): %w", err)
	}
	return filepath.Join(home, ".local", "share", "kubeup"), nil
}

// Dir is a cluster's directory.
func Dir(dataDir, name string) string { return filepath.Join(dataDir, "clusters", name) }

// LocalVM is the QEMU of machine of a local cluster, by its directory
// (pidfile, console log, QMP socket): what status, diagnose and the test
// suites read and stop without the Pulumi state.
func LocalVM(dataDir, name, machine string) *qemu.VM {
	return &qemu.VM{Dir: filepath.Join(Dir(dataDir, name), "machines", machine)}
}

// Files in a cluster's directory.
const (
	stateFile      = "state.json"
	kubeconfigFile = "kubeconfig"
	renderDir      = "render"
	pkiDir         = "pki"
)

// State is what `up` decided about a cluster, kept so that later commands
// (status, verify, kubeconfig, down) need no config file.
type State struct {
	Name          string `json:"name"`
	Provider      string `json:"provider"`
	Accel         string `json:"accel"`
	APIServerPort int    `json:"apiServerPort"`
	// APIEndpoint is the API server's URL when the host reaches it
	// directly (metal) rather than through a port forward.
	APIEndpoint string         `json:"apiEndpoint,omitempty"`
	Machines    []MachineState `json:"machines"`
	Created     time.Time      `json:"created"`
	// Installed: on metal, when each machine (by MAC) reported it was
	// installed; the boot server sends those to their disks.
	Installed map[string]time.Time `json:"installed,omitempty"`
	// Cloud is where a cloud cluster lives (aws, gcp): what down needs
	// to find leftovers without the config.
	Cloud *CloudState `json:"cloud,omitempty"`
}

// CloudState is a cloud cluster's location.
type CloudState struct {
	Region  string `json:"region"`
	Zone    string `json:"zone"`
	Project string `json:"project,omitempty"`
	// Images are the published images' stacks the cluster boots from.
	ImageStacks []string `json:"imageStacks,omitempty"`
}

// APIServerURL is where the host reaches the API server.
func (s *State) APIServerURL() string {
	if s.APIEndpoint != "" {
		return s.APIEndpoint
	}
	return fmt.Sprintf("https://127.0.0.1:%d", s.APIServerPort)
}

// AgentURL is where the host reaches a machine's agent: its port forward
// on 127.0.0.1, or (metal) the machine's own address.
func (s *State) AgentURL(m MachineState) string {
	// Metal and cloud machines are reached at their own addresses (on a
	// cloud only from inside its network).
	if s.Provider == config.ProviderMetal || s.Cloud != nil {
		return fmt.Sprintf("https://%s:%d", m.IP, components.AgentPort)
	}
	return fmt.Sprintf("https://127.0.0.1:%d", m.AgentPort)
}

// MachineState is one machine's host-side facts.
type MachineState struct {
	Name      string      `json:"name"`
	Role      config.Role `json:"role"`
	IP        string      `json:"ip"`
	AgentPort int         `json:"agentPort"`
	SSHPort   int         `json:"sshPort,omitempty"`
	// APIServerPort: with several masters, the host port of this
	// master's API server (the cluster's APIServerPort is then the
	// host's endpoint over all of them).
	APIServerPort int `json:"apiServerPort,omitempty"`
	// EtcdJoin: a master made by kubeup replace, whose etcd joined the
	// running cluster; its seed keeps saying so.
	EtcdJoin bool   `json:"etcdJoin,omitempty"`
	MAC      string `json:"mac,omitempty"` // metal
}

// ErrNotFound: no cluster of that name.
var ErrNotFound = errors.New("no such cluster")

// LoadState reads a cluster's state.
func LoadState(dataDir, name string) (*State, error) {
	data, err := os.ReadFile(filepath.Join(Dir(dataDir, name), stateFile))
	if os.IsNotExist(err) {
		return nil, fmt.Errorf("%w %q (kubeup up --name %s creates it)", ErrNotFound, name, name)
	}
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(Dir(dataDir, name), stateFile), err)
	}
	return &s, nil
}

func (s *State) save(dir string) error {
	return writeFile(filepath.Join(dir, stateFile), mustJSON(s), 0o644)
}

func mustJSON(v any) []byte {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		panic(err) // only plain structs are marshalled
	}
	return append(data, '\n')
}

// writeFile writes through a temporary file and a rename.
func writeFile(path string, data []byte, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Machine returns a machine's state by name.
func (s *State) Machine(name string) (MachineState, bool) {
	for _, m := range s.Machines {
		if m.Name == name {
			return m, true
		}
	}
	return MachineState{}, false
}
