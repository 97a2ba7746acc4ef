package agent

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components/agentconfig"
)

// The configs components renders for machines must load: they are the
// contract between the catalogue and this package.
func TestLoadRenderedConfigs(t *testing.T) {
	for _, machine := range []string{"master-0", "node-0"} {
		path := filepath.Join("..", "..", "components", "testdata", "files", machine, "etc", "kubeup", "agent.yaml.golden")
		cfg, err := LoadConfig(path)
		if err != nil {
			t.Fatalf("%s: %v", machine, err)
		}
		if cfg.Machine != machine || len(cfg.Units) == 0 || cfg.Network.ClusterPodCIDR == "" {
			t.Errorf("%s: loaded %+v", machine, cfg)
		}
	}
}

func validConfig() agentconfig.Config {
	return agentconfig.Config{
		APIVersion: ConfigAPIVersion, Kind: ConfigKind,
		Cluster: "demo", Machine: "node-0", Role: agentconfig.RoleNode, MachineIP: "10.77.0.100",
		Listen: ":10290", CertFile: "/pki/agent.crt", KeyFile: "/pki/agent.key", ClientCAFile: "/pki/ca.crt",
		Kubeconfig: "/etc/kubernetes/kubelet.conf",
		Units:      []string{"containerd.service", "kubelet.service"},
		Network:    agentconfig.Net{ClusterPodCIDR: "10.244.0.0/16", CNIConfDir: "/etc/cni/net.d"},
		Scrape:     map[string]string{"containerd": "http://127.0.0.1:1338/v1/metrics"},
	}
}

func TestLoadConfigErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadConfig(filepath.Join(dir, "missing.yaml")); err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("missing file: %v", err)
	}

	good := validConfig()
	data, _ := yaml.Marshal(good)
	unknown := writeFile(t, filepath.Join(dir, "unknown.yaml"), append(data, "listne: :1\n"...))
	if _, err := LoadConfig(unknown); err == nil || !strings.Contains(err.Error(), "listne") || !strings.Contains(err.Error(), unknown) {
		t.Errorf("unknown field: %v", err)
	}

	bad := good
	bad.Kind = "Agent"
	bad.Role = "worker"
	bad.Listen = "10290"
	bad.MachineIP = "10.77.0"
	bad.CertFile = ""
	bad.Units = []string{"kubelet"}
	bad.Network.ClusterPodCIDR = "10.244.1.0/16"
	bad.Network.CNIConfDir = "net.d"
	bad.Scrape = map[string]string{"Proxy": "http://10.0.0.1/metrics"}
	bad.RegistryMirror = "10.77.0.2:10292"
	data, _ = yaml.Marshal(bad)
	path := writeFile(t, filepath.Join(dir, "bad.yaml"), data)
	_, err := LoadConfig(path)
	var ce *ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("want a *ConfigError, got %v", err)
	}
	for _, field := range []string{"kind", "role", "listen", "machineIP", "certFile", "units[0]",
		"network.clusterPodCIDR", "network.cniConfDir", "scrape.Proxy: name", "scrape.Proxy: \"http://10.0.0.1/metrics\": host must be a loopback", "registryMirror"} {
		if !strings.Contains(err.Error(), path+": "+field) {
			t.Errorf("no problem reported for %s in:\n%v", field, err)
		}
	}
	if len(ce.Problems) != 11 {
		t.Errorf("%d problems, want 11:\n%v", len(ce.Problems), err)
	}

	if err := ValidateConfig(&good); err != nil {
		t.Errorf("valid config refused: %v", err)
	}
	for _, addr := range []string{"127.0.0.1:10292", "[::1]:10292"} {
		mirror := validConfig()
		mirror.RegistryMirror = addr
		if err := ValidateConfig(&mirror); err != nil {
			t.Errorf("registryMirror %s refused: %v", addr, err)
		}
	}
	for _, addr := range []string{"0.0.0.0:10292", ":10292", "localhost:10292", "127.0.0.1:0", "127.0.0.1"} {
		mirror := validConfig()
		mirror.RegistryMirror = addr
		if err := ValidateConfig(&mirror); err == nil || !strings.Contains(err.Error(), "registryMirror") {
			t.Errorf("registryMirror %s: %v, want it refused", addr, err)
		}
	}
}

func TestValidateLogsAndEtcd(t *testing.T) {
	good := validConfig()
	good.Logs = agentconfig.Logs{Forward: "10.96.0.11:24224", BufferDir: "/var/lib/kubeup-agent/buffer",
		BufferMaxBytes: 256 << 20, StateDir: "/var/lib/kubeup-agent/logs", Identifiers: []string{"kubeup"}}
	good.Etcd = &agentconfig.Etcd{Endpoints: []string{"https://127.0.0.1:2379"},
		CAFile: "/pki/etcd/ca.crt", CertFile: "/pki/etcd/hc.crt", KeyFile: "/pki/etcd/hc.key"}
	if err := ValidateConfig(&good); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	// Forwarding off: the other log fields do not matter.
	off := validConfig()
	off.Logs = agentconfig.Logs{BufferMaxBytes: 1}
	if err := ValidateConfig(&off); err != nil {
		t.Errorf("forwarding off: %v", err)
	}

	bad := good
	bad.Logs = agentconfig.Logs{Forward: "10.96.0.11", BufferDir: "buffer", BufferMaxBytes: 1024,
		Identifiers: []string{"kubeup", "a b", "x=y"}, AuditLog: "audit.log"}
	bad.Etcd = &agentconfig.Etcd{Endpoints: []string{"http://127.0.0.1:2379"}, CAFile: "ca.crt"}
	err := ValidateConfig(&bad)
	for _, field := range []string{"logs.forward", "logs.bufferDir", "logs.stateDir: required", "logs.bufferMaxBytes",
		"logs.identifiers[1]", "logs.identifiers[2]", "logs.auditLog", "etcd.endpoints[0]", "etcd.caFile", "etcd.certFile: required", "etcd.keyFile: required"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("no problem reported for %s in:\n%v", field, err)
		}
	}
	if got := logIdentifiers(agentconfig.Logs{}); len(got) != 1 || got[0] != "kubeup" {
		t.Errorf("default identifiers %q", got)
	}
	if got := logIdentifiers(agentconfig.Logs{Identifiers: []string{}}); len(got) != 0 {
		t.Errorf("explicitly none: %q", got)
	}
}
