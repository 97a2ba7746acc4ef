package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
)

// CNI configuration written for containerd's CRI plugin.
const (
	CNIConfFile   = "10-kubeup.conflist"
	CNINetwork    = "kubeup"
	CNIBridge     = "cni0"
	cniVersion    = "1.0.0"
	cniIPAMDir    = "/var/lib/cni/networks"
	CNIConfigMode = 0o600 // read by containerd (root) only; CIS 1.1.9
)

type cniConfList struct {
	CNIVersion string `json:"cniVersion"`
	Name       string `json:"name"`
	Plugins    []any  `json:"plugins"`
}

type cniBridge struct {
	Type        string       `json:"type"`
	Bridge      string       `json:"bridge"`
	IsGateway   bool         `json:"isGateway"`
	IPMasq      bool         `json:"ipMasq"`
	HairpinMode bool         `json:"hairpinMode"`
	IPAM        cniHostLocal `json:"ipam"`
}

type cniHostLocal struct {
	Type    string       `json:"type"`
	Ranges  [][]cniRange `json:"ranges"`
	Routes  []cniRoute   `json:"routes"`
	DataDir string       `json:"dataDir"`
}

type cniRange struct {
	Subnet string `json:"subnet"`
}

type cniRoute struct {
	Dst string `json:"dst"`
}

type cniPortMap struct {
	Type         string          `json:"type"`
	Capabilities map[string]bool `json:"capabilities"`
}

// CNIConfig renders the machine's CNI network: a bridge whose host-local
// IPAM hands out the node's pod CIDR, then portmap for hostPort. The bridge
// does not masquerade (ipMasq false): the agent's one KUBEUP-MASQ rule does,
// for traffic leaving the cluster's pod network only, so pod-to-pod traffic
// between machines keeps its source address.
func CNIConfig(podCIDR netip.Prefix) ([]byte, error) {
	if !podCIDR.IsValid() {
		return nil, fmt.Errorf("cni config: invalid pod CIDR")
	}
	defaultRoute := "0.0.0.0/0"
	if podCIDR.Addr().Is6() {
		defaultRoute = "::/0"
	}
	conf := cniConfList{
		CNIVersion: cniVersion,
		Name:       CNINetwork,
		Plugins: []any{
			cniBridge{
				Type: "bridge", Bridge: CNIBridge, IsGateway: true, IPMasq: false, HairpinMode: true,
				IPAM: cniHostLocal{
					Type:    "host-local",
					Ranges:  [][]cniRange{{{Subnet: podCIDR.Masked().String()}}},
					Routes:  []cniRoute{{Dst: defaultRoute}},
					DataDir: cniIPAMDir,
				},
			},
			cniPortMap{Type: "portmap", Capabilities: map[string]bool{"portMappings": true}},
		},
	}
	data, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("cni config: %w", err)
	}
	return append(data, '\n'), nil
}

// writeFileIfChanged writes data to path through a temporary file and a
// rename (containerd watches the directory and must never see half a file),
// and only when the content differs. It reports whether it wrote.
func writeFileIfChanged(path string, data []byte, mode os.FileMode) (bool, error) {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return false, nil
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	// A dot name, so CNI loaders that list *.conflist ignore the temp file.
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
