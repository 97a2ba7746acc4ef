package agent

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components/agentconfig"
)

// Config file identity.
const (
	ConfigAPIVersion = "kubeup.dev/v1alpha1"
	ConfigKind       = "AgentConfig"
)

// ConfigError lists every problem of a configuration file at once, each with
// its field path.
type ConfigError struct {
	File     string
	Problems []string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("\n")
		}
		if e.File != "" {
			b.WriteString(e.File + ": ")
		}
		b.WriteString(p)
	}
	return b.String()
}

// LoadConfig reads and validates an agent configuration file. Unknown
// fields are errors: a typo must not silently drop a setting.
func LoadConfig(path string) (*agentconfig.Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent config: %w", err)
	}
	var cfg agentconfig.Config
	if err := yaml.UnmarshalStrict(data, &cfg); err != nil {
		return nil, &ConfigError{File: path, Problems: []string{err.Error()}}
	}
	if err := ValidateConfig(&cfg); err != nil {
		if ce, ok := err.(*ConfigError); ok {
			ce.File = path
		}
		return nil, err
	}
	return &cfg, nil
}

// minLogBuffer: a smaller log buffer would drop records within seconds of
// an aggregator outage.
const minLogBuffer = 1 << 20

// minRenewalLifetime is the shortest lifetime the CSR API signs (10
// minutes, kube-controller-manager's floor).
const minRenewalLifetime = 10 * time.Minute

var (
	// syslogIdentifier: a journal field value safe on journalctl's command
	// line (no '=' or '+' term, no spaces).
	syslogIdentifier = regexp.MustCompile(`^[A-Za-z0-9_.:@-]+$`)
	scrapeName       = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	signerName       = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?/[A-Za-z0-9][-A-Za-z0-9_.]*$`)
	unitName         = regexp.MustCompile(`^[A-Za-z0-9:_.\\@-]+\.(service|socket|target|timer|mount|path|scope|slice)$`)
)

// ValidateConfig checks every field the agent uses and returns a
// *ConfigError naming each bad one.
func ValidateConfig(c *agentconfig.Config) error {
	var p []string
	bad := func(field, format string, args ...any) {
		p = append(p, field+": "+fmt.Sprintf(format, args...))
	}
	required := func(field, v string) bool {
		if v == "" {
			bad(field, "required")
			return false
		}
		return true
	}
	absolute := func(field, v string) {
		if required(field, v) && !filepath.IsAbs(v) {
			bad(field, "%q is not an absolute path", v)
		}
	}

	if c.APIVersion != ConfigAPIVersion {
		bad("apiVersion", "%q, want %q", c.APIVersion, ConfigAPIVersion)
	}
	if c.Kind != ConfigKind {
		bad("kind", "%q, want %q", c.Kind, ConfigKind)
	}
	required("machine", c.Machine)
	if roles := []string{agentconfig.RoleMaster, agentconfig.RoleNode}; !slices.Contains(roles, c.Role) {
		bad("role", "%q, want one of %v", c.Role, roles)
	}
	if c.MachineIP != "" {
		if _, err := netip.ParseAddr(c.MachineIP); err != nil {
			bad("machineIP", "%q is not an IP address", c.MachineIP)
		}
	}
	if required("listen", c.Listen) {
		if _, port, err := net.SplitHostPort(c.Listen); err != nil || port == "" {
			bad("listen", "%q is not host:port", c.Listen)
		}
	}
	if c.RegistryMirror != "" {
		// Plain HTTP, no authentication: loopback only, never the
		// machine's address.
		host, port, err := net.SplitHostPort(c.RegistryMirror)
		ip, ipErr := netip.ParseAddr(host)
		if err != nil || !validPort(port) || ipErr != nil || !ip.IsLoopback() {
			bad("registryMirror", "%q is not a loopback IP address and port (such as 127.0.0.1:10292)", c.RegistryMirror)
		}
	}
	absolute("certFile", c.CertFile)
	absolute("keyFile", c.KeyFile)
	absolute("clientCAFile", c.ClientCAFile)
	absolute("kubeconfig", c.Kubeconfig)
	if len(c.Units) == 0 {
		bad("units", "required")
	}
	for i, u := range c.Units {
		if !unitName.MatchString(u) {
			bad(fmt.Sprintf("units[%d]", i), "%q is not a systemd unit name", u)
		}
	}
	for i, d := range c.CertificateDirs {
		absolute(fmt.Sprintf("certificateDirs[%d]", i), d)
	}
	if required("network.clusterPodCIDR", c.Network.ClusterPodCIDR) {
		if pfx, err := netip.ParsePrefix(c.Network.ClusterPodCIDR); err != nil || pfx.Masked() != pfx {
			bad("network.clusterPodCIDR", "%q is not a network prefix", c.Network.ClusterPodCIDR)
		}
	}
	absolute("network.cniConfDir", c.Network.CNIConfDir)
	if c.Logs.Forward != "" {
		if host, port, err := net.SplitHostPort(c.Logs.Forward); err != nil || host == "" || !validPort(port) {
			bad("logs.forward", "%q is not host:port", c.Logs.Forward)
		}
		absolute("logs.bufferDir", c.Logs.BufferDir)
		absolute("logs.stateDir", c.Logs.StateDir)
		if c.Logs.BufferMaxBytes < minLogBuffer {
			bad("logs.bufferMaxBytes", "%d is below the minimum of %d", c.Logs.BufferMaxBytes, minLogBuffer)
		}
		if c.Logs.AuditLog != "" {
			absolute("logs.auditLog", c.Logs.AuditLog)
		}
		for i, id := range c.Logs.Identifiers {
			if !syslogIdentifier.MatchString(id) {
				bad(fmt.Sprintf("logs.identifiers[%d]", i), "%q is not a syslog identifier", id)
			}
		}
	}
	if e := c.Etcd; e != nil {
		if len(e.Endpoints) == 0 {
			bad("etcd.endpoints", "required")
		}
		for i, ep := range e.Endpoints {
			if u, err := url.Parse(ep); err != nil || u.Scheme != "https" || u.Host == "" {
				bad(fmt.Sprintf("etcd.endpoints[%d]", i), "%q is not an https:// URL", ep)
			}
		}
		absolute("etcd.caFile", e.CAFile)
		absolute("etcd.certFile", e.CertFile)
		absolute("etcd.keyFile", e.KeyFile)
		if m := e.Member; m != nil {
			if required("etcd.member.unit", m.Unit) && !unitName.MatchString(m.Unit) {
				bad("etcd.member.unit", "%q is not a systemd unit name", m.Unit)
			}
			if u, err := url.Parse(m.ClientURL); err != nil || u.Scheme != "https" || u.Host == "" {
				bad("etcd.member.clientURL", "%q is not an https:// URL", m.ClientURL)
			}
			required("etcd.member.name", m.Name)
			absolute("etcd.member.dataDir", m.DataDir)
			if m.DataDir == "/" {
				bad("etcd.member.dataDir", "must not be /")
			}
			required("etcd.member.initialAdvertisePeerURLs", m.InitialAdvertisePeerURLs)
			if required("etcd.member.initialCluster", m.InitialCluster) && !strings.Contains(m.InitialCluster, m.Name+"=") {
				bad("etcd.member.initialCluster", "%q does not name the member %q", m.InitialCluster, m.Name)
			}
			required("etcd.member.initialClusterToken", m.InitialClusterToken)
		}
		if sn := e.Snapshots; sn != nil {
			absolute("etcd.snapshots.dir", sn.Dir)
			if d, err := time.ParseDuration(sn.Interval); err != nil || d < 0 {
				bad("etcd.snapshots.interval", "%q is not a duration of 0s or more", sn.Interval)
			}
			if sn.Keep < 1 {
				bad("etcd.snapshots.keep", "%d: keep at least 1", sn.Keep)
			}
		}
	}
	if rn := c.Renewal; rn != nil {
		absolute("renewal.dir", rn.Dir)
		if rn.Lifetime.Duration < minRenewalLifetime {
			bad("renewal.lifetime", "%s is shorter than %s", rn.Lifetime.Duration, minRenewalLifetime)
		}
		for i, q := range rn.Requests {
			field := fmt.Sprintf("renewal.requests[%d]", i)
			absolute(field+".certFile", q.CertFile)
			absolute(field+".keyFile", q.KeyFile)
			if !signerName.MatchString(q.SignerName) {
				bad(field+".signerName", "%q is not a signer name (domain/path)", q.SignerName)
			}
			if t := q.Template; t != nil {
				if t.CommonName == "" {
					bad(field+".template.commonName", "is empty")
				}
				for j, ip := range t.IPAddresses {
					if net.ParseIP(ip) == nil {
						bad(fmt.Sprintf("%s.template.ipAddresses[%d]", field, j), "%q is not an IP address", ip)
					}
				}
			} else if rn.Join != nil {
				bad(field+".template", "is missing: renewal.join asks for the certificate by it")
			}
		}
		if rn.Join != nil {
			absolute("renewal.join.bootstrapKubeconfig", rn.Join.BootstrapKubeconfig)
		}
	}
	for _, unit := range sortedKeys(c.Inspect.EnvFiles) {
		absolute("inspect.envFiles."+unit, c.Inspect.EnvFiles[unit])
	}
	for i, p := range c.Inspect.ConfigFiles {
		absolute(fmt.Sprintf("inspect.configFiles[%d]", i), p)
	}
	for i, p := range c.Inspect.Paths {
		absolute(fmt.Sprintf("inspect.paths[%d]", i), p)
	}
	for _, name := range sortedKeys(c.Scrape) {
		field := "scrape." + name
		if !scrapeName.MatchString(name) {
			bad(field, "name must be lower-case letters, digits and '-'")
		}
		if err := loopbackURL(c.Scrape[name]); err != nil {
			bad(field, "%v", err)
		}
	}
	if len(p) > 0 {
		return &ConfigError{Problems: p}
	}
	return nil
}

// loopbackURL accepts only http(s) URLs on the loopback interface: the
// agent serves them onwards, and must not become a proxy to elsewhere.
func loopbackURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("%q: scheme must be http or https", raw)
	}
	host := u.Hostname()
	if ip, err := netip.ParseAddr(host); host != "localhost" && (err != nil || !ip.IsLoopback()) {
		return fmt.Errorf("%q: host must be a loopback address", raw)
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// withTimerServices adds, after each timer in units, the service it starts
// by systemd's default (a.timer starts a.service): a scheduled job's lines
// are logged by its service, while the agent watches its timer, which stays
// active between runs.
func withTimerServices(units []string) []string {
	out := make([]string, 0, len(units))
	for _, u := range units {
		out = append(out, u)
		if base, ok := strings.CutSuffix(u, ".timer"); ok && !slices.Contains(units, base+".service") {
			out = append(out, base+".service")
		}
	}
	return out
}

// logIdentifiers are the SYSLOG_IDENTIFIERs to forward: absent means the
// default, an explicit empty list means none.
func logIdentifiers(l agentconfig.Logs) []string {
	if l.Identifiers == nil {
		return []string{agentconfig.LogIdentifier}
	}
	return l.Identifiers
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
