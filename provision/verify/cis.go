package verify

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components"
	"kubeup.dev/kubeup/daemons/agent"
	"kubeup.dev/kubeup/provision/cluster"
)

// Outcomes of a CIS item on a machine.
const (
	CISPass = "PASS"
	CISFail = "FAIL"
	// CISSkip is a recommendation kubeup deliberately does not follow (the
	// reason is the evidence, and the README's table).
	CISSkip = "SKIP"
)

// CISResult is one CIS Kubernetes Benchmark (v1.10) item on one machine.
type CISResult struct {
	ID, Title, Machine, Status string
	// Evidence is what was seen (flags and values, file modes), or why a
	// skipped item does not apply.
	Evidence string
}

// cisMachine is one machine's configuration as its agent reports it.
type cisMachine struct {
	name  string
	flags map[string]map[string]string // unit (without .service) -> flag -> value
	files map[string]agent.FileInfo
	docs  map[string]map[string]any // parsed configuration files
}

func newCISMachine(name string, mc *agent.MachineConfig) *cisMachine {
	m := &cisMachine{name: name, flags: map[string]map[string]string{}, files: map[string]agent.FileInfo{}, docs: map[string]map[string]any{}}
	for _, u := range mc.Units {
		m.flags[strings.TrimSuffix(u.Unit, ".service")] = u.Flags
	}
	for _, f := range mc.Files {
		m.files[f.Path] = f
		if f.Content != nil {
			var doc map[string]any
			if err := yaml.Unmarshal([]byte(*f.Content), &doc); err == nil {
				m.docs[f.Path] = doc
			}
		}
	}
	return m
}

// cisItem is a recommendation and how to check it on a machine's report.
type cisItem struct {
	id, title string
	// control: an item of the control plane (masters); otherwise one of
	// every machine's kubelet and kube-proxy (section 4).
	control bool
	// skip is why kubeup deliberately does not follow it.
	skip  string
	check func(m *cisMachine) (bool, string)
}

// EvaluateCIS checks every item on every machine: machines maps a machine's
// name to its role ("master" or "node") and its report.
func EvaluateCIS(roles map[string]string, reports map[string]*agent.MachineConfig) []CISResult {
	var out []CISResult
	for _, name := range slices.Sorted(maps.Keys(reports)) {
		m := newCISMachine(name, reports[name])
		for _, it := range cisItems() {
			if it.control && roles[name] != string(components.Master) {
				continue
			}
			r := CISResult{ID: it.id, Title: it.title, Machine: name}
			switch {
			case it.skip != "":
				r.Status, r.Evidence = CISSkip, it.skip
			default:
				ok, ev := it.check(m)
				r.Status, r.Evidence = CISFail, ev
				if ok {
					r.Status = CISPass
				}
			}
			out = append(out, r)
		}
	}
	return out
}

// --- checks on flags ---

func (m *cisMachine) flag(unit, name string) (string, bool) {
	v, ok := m.flags[unit][name]
	return v, ok
}

func show(unit, name, v string, ok bool) string {
	if !ok {
		return fmt.Sprintf("%s: --%s not set", unit, name)
	}
	return fmt.Sprintf("%s --%s=%s", unit, name, v)
}

func flagIs(unit, name, want string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.flag(unit, name)
		return ok && v == want, show(unit, name, v, ok)
	}
}

// flagNot passes when the flag is unset or not bad.
func flagNot(unit, name, bad string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.flag(unit, name)
		return !ok || v != bad, show(unit, name, v, ok)
	}
}

func flagsSet(unit string, names ...string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		var ev []string
		pass := true
		for _, n := range names {
			v, ok := m.flag(unit, n)
			pass = pass && ok && v != ""
			ev = append(ev, show(unit, n, v, ok))
		}
		return pass, strings.Join(ev, ", ")
	}
}

func flagUnset(unit, name string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.flag(unit, name)
		return !ok, show(unit, name, v, ok)
	}
}

func list(v string) []string {
	if v == "" {
		return nil
	}
	return strings.Split(v, ",")
}

func flagListHas(unit, name, item string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.flag(unit, name)
		return slices.Contains(list(v), item), show(unit, name, v, ok)
	}
}

// flagListLacks passes when the flag is unset or its list lacks item.
func flagListLacks(unit, name, item string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.flag(unit, name)
		return !slices.Contains(list(v), item), show(unit, name, v, ok)
	}
}

func flagAtLeast(unit, name string, min int) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.flag(unit, name)
		n, err := strconv.Atoi(v)
		return ok && err == nil && n >= min, show(unit, name, v, ok)
	}
}

// strongCiphers is the CIS list of strong suites (1.2.29); the kubelet's
// (4.2.12) is its ECDHE AEAD part, which kubeup's list is.
var strongCiphers = []string{
	"TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
	"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
}

var kubeletStrongCiphers = []string{
	"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305",
	"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
	"TLS_RSA_WITH_AES_256_GCM_SHA384", "TLS_RSA_WITH_AES_128_GCM_SHA256",
}

// strong: every suite is in allowed, and there is at least one (unset
// means Go's defaults, which include CBC suites).
func strong(suites, allowed []string) bool {
	if len(suites) == 0 {
		return false
	}
	for _, s := range suites {
		if !slices.Contains(allowed, s) {
			return false
		}
	}
	return true
}

// tlsFlags: TLS 1.2 or newer, and only strong suites.
func tlsFlags(unit string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		minV, okMin := m.flag(unit, "tls-min-version")
		suites, okS := m.flag(unit, "tls-cipher-suites")
		pass := okMin && (minV == "VersionTLS12" || minV == "VersionTLS13") && strong(list(suites), strongCiphers)
		return pass, show(unit, "tls-min-version", minV, okMin) + ", " + show(unit, "tls-cipher-suites", suites, okS)
	}
}

// --- checks on files ---

func (m *cisMachine) file(path string) (agent.FileInfo, bool) {
	f, ok := m.files[path]
	return f, ok && f.Error == ""
}

// modeAtMost: every path exists with no permission bit beyond max.
func modeAtMost(max fs.FileMode, paths ...string) func(*cisMachine) (bool, string) {
	return eachFile(paths, func(f agent.FileInfo) (bool, string) {
		return f.Mode&^max == 0, fmt.Sprintf("%04o", f.Mode)
	})
}

// ownedByRoot: every path exists and is root:root.
func ownedByRoot(paths ...string) func(*cisMachine) (bool, string) {
	return eachFile(paths, func(f agent.FileInfo) (bool, string) {
		return f.UID == 0 && f.GID == 0, fmt.Sprintf("%d:%d", f.UID, f.GID)
	})
}

// eachFile passes when every path exists and passes check; the evidence
// is each path with what check saw (or "not found").
func eachFile(paths []string, check func(agent.FileInfo) (bool, string)) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		var ev []string
		pass := true
		for _, p := range paths {
			f, ok := m.file(p)
			if !ok {
				pass = false
				ev = append(ev, p+" not found")
				continue
			}
			ok, seen := check(f)
			pass = pass && ok
			ev = append(ev, p+" "+seen)
		}
		return pass, strings.Join(ev, ", ")
	}
}

// under lists the reported files (not directories) under dir whose names
// match pattern ("" for all).
func (m *cisMachine) under(dir, pattern string) []string {
	var out []string
	for p, f := range m.files {
		if f.Dir || f.Error != "" || !strings.HasPrefix(p, dir+"/") {
			continue
		}
		if ok, _ := filepath.Match(pattern, filepath.Base(p)); pattern == "" || ok {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// allUnder applies a check of one path to every file (and, with dirs,
// directory) under dir; there must be at least one.
func allUnder(dir, pattern string, dirs bool, check func(path string) func(*cisMachine) (bool, string)) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		paths := m.under(dir, pattern)
		if dirs {
			for p, f := range m.files {
				if f.Dir && f.Error == "" && (p == dir || strings.HasPrefix(p, dir+"/")) {
					paths = append(paths, p)
				}
			}
			slices.Sort(paths)
		}
		if len(paths) == 0 {
			return false, "nothing under " + dir
		}
		var bad []string
		for _, p := range paths {
			if ok, ev := check(p)(m); !ok {
				bad = append(bad, ev)
			}
		}
		if len(bad) > 0 {
			return false, strings.Join(bad, ", ")
		}
		return true, fmt.Sprintf("%d under %s", len(paths), dir)
	}
}

func mode600(p string) func(*cisMachine) (bool, string)   { return modeAtMost(0o600, p) }
func rootOwned(p string) func(*cisMachine) (bool, string) { return ownedByRoot(p) }

// absentOr passes when path is not on the machine, or passes check.
func absentOr(path string, check func(*cisMachine) (bool, string)) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		if _, ok := m.file(path); !ok {
			return true, path + " is not on the machine"
		}
		return check(m)
	}
}

func both(a, b func(*cisMachine) (bool, string)) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		okA, evA := a(m)
		okB, evB := b(m)
		return okA && okB, evA + "; " + evB
	}
}

// --- checks on configuration files ---

// value is a field of a parsed configuration file, by JSON path.
func (m *cisMachine) value(path string, keys ...string) (any, bool) {
	var v any = m.docs[path]
	if m.docs[path] == nil {
		return nil, false
	}
	for _, k := range keys {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = obj[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

func showValue(path string, keys []string, v any, ok bool) string {
	field := strings.Join(keys, ".")
	if !ok {
		return fmt.Sprintf("%s: %s not set", filepath.Base(path), field)
	}
	if l, isList := v.([]any); isList {
		var s []string
		for _, x := range l {
			s = append(s, fmt.Sprint(x))
		}
		v = strings.Join(s, ",")
	}
	return fmt.Sprintf("%s: %s=%v", filepath.Base(path), field, v)
}

// valueIs: the field equals want (compared as text); unsetOK lets the
// default stand when it is the recommended value.
func valueIs(path, want string, unsetOK bool, keys ...string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		if m.docs[path] == nil {
			return false, path + " not reported"
		}
		v, ok := m.value(path, keys...)
		return (ok && fmt.Sprint(v) == want) || (!ok && unsetOK), showValue(path, keys, v, ok)
	}
}

func valueNot(path, bad string, keys ...string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		if m.docs[path] == nil {
			return false, path + " not reported"
		}
		v, ok := m.value(path, keys...)
		return !ok || fmt.Sprint(v) != bad, showValue(path, keys, v, ok)
	}
}

func valueSet(path string, keys ...string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.value(path, keys...)
		return ok && fmt.Sprint(v) != "", showValue(path, keys, v, ok)
	}
}

func valuePositive(path string, keys ...string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.value(path, keys...)
		n, isNum := v.(float64)
		return ok && isNum && n > 0, showValue(path, keys, v, ok)
	}
}

func valueStrongCiphers(path string, allowed []string, keys ...string) func(*cisMachine) (bool, string) {
	return func(m *cisMachine) (bool, string) {
		v, ok := m.value(path, keys...)
		l, _ := v.([]any)
		var suites []string
		for _, x := range l {
			suites = append(suites, fmt.Sprint(x))
		}
		return strong(suites, allowed), showValue(path, keys, v, ok)
	}
}

// kubeletServingCert: a serving certificate from files (masters, 4.2.9) or
// requested from the cluster CA and rotated (nodes: serverTLSBootstrap).
func kubeletServingCert(m *cisMachine) (bool, string) {
	k := components.KubeletConfigPath
	if ok, ev := both(valueSet(k, "tlsCertFile"), valueSet(k, "tlsPrivateKeyFile"))(m); ok {
		return true, ev
	}
	return valueIs(k, "true", false, "serverTLSBootstrap")(m)
}

// podSecurityEnforced: the PodSecurity admission plugin enforces a level
// above privileged for namespaces that do not choose their own.
func podSecurityEnforced(m *cisMachine) (bool, string) {
	ok, ev := flagListHas("kube-apiserver", "enable-admission-plugins", "PodSecurity")(m)
	if !ok {
		return false, ev
	}
	plugins, _ := m.value(components.AdmissionConfigPath, "plugins")
	l, _ := plugins.([]any)
	for _, p := range l {
		pm, _ := p.(map[string]any)
		if pm["name"] != "PodSecurity" {
			continue
		}
		cfg, _ := pm["configuration"].(map[string]any)
		defaults, _ := cfg["defaults"].(map[string]any)
		enforce := fmt.Sprint(defaults["enforce"])
		return enforce == components.PodSecurityBaseline || enforce == components.PodSecurityRestricted,
			fmt.Sprintf("%s; PodSecurity defaults enforce=%s audit=%v warn=%v", ev, enforce, defaults["audit"], defaults["warn"])
	}
	return false, ev + "; no PodSecurity configuration in " + components.AdmissionConfigPath
}

// uniqueEtcdCA: etcd trusts another CA than the API server's clients' (2.7).
func uniqueEtcdCA(m *cisMachine) (bool, string) {
	etcdCA, ok1 := m.flag("etcd", "trusted-ca-file")
	apiCA, ok2 := m.flag("kube-apiserver", "client-ca-file")
	return ok1 && ok2 && etcdCA != apiCA, show("etcd", "trusted-ca-file", etcdCA, ok1) + ", " + show("kube-apiserver", "client-ca-file", apiCA, ok2)
}

// etcdTLS: etcd speaks TLS 1.2+ with strong suites only.
func etcdTLS(m *cisMachine) (bool, string) {
	minV, ok1 := m.flag("etcd", "tls-min-version")
	suites, ok2 := m.flag("etcd", "cipher-suites")
	return ok1 && (minV == "TLS1.2" || minV == "TLS1.3") && strong(list(suites), strongCiphers),
		show("etcd", "tls-min-version", minV, ok1) + ", " + show("etcd", "cipher-suites", suites, ok2)
}

// unitFiles are a component's "pod specification" in kubeup: its unit and
// the env file that holds its flags.
func unitFiles(name string) []string {
	return []string{components.UnitDir + "/" + name + ".service", components.EnvFile(name)}
}

// Deliberate deviations, also in the README.
const (
	skipEtcdOwner = "deliberate: etcd runs as root, as with kubeadm; its data directory is root's and 0700 (1.1.11)"
	skipCertMode  = "deliberate: a certificate is public; certificates are 0644 as kubeadm writes them, keys 0600 (1.1.21)"
	skipEventRate = "deliberate: EventRateLimit's configuration API is alpha; each kubelet's eventRecordQPS bounds events where most come from (4.2.8)"
	skipPull      = "deliberate: every image is on the machine already (preloaded, or `kubeup images load`), and its own registry mirror answers every pull from there with no credentials to check: AlwaysPullImages would cost a request per container start and protect nothing"
	skipBind      = "deliberate: Prometheus scrapes its /metrics from the pod network; everything but /healthz needs a client certificate or an authorised token, and profiling is off"
	skipProviders = "not read on the machine: the file holds the encryption key, which the agent does not serve; the render test checks its provider is secretbox, and 1.2.27 its mode"
	skipHostname  = "deliberate: the Node is named after kubeup's machine whatever the cloud names the host; its serving certificate and NodeRestriction bind the kubelet to that name"
)

// cisItems are the CIS Kubernetes Benchmark v1.10 items that apply to
// kubeup's machines (components run as systemd units with env files of
// flags, not static pods), and kubeup's own (K.*).
func cisItems() []cisItem {
	api, cm, sched, kubelet := "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"
	kc, kp := components.KubeletConfigPath, components.KubeProxyConfigPath
	pki := components.PKIDir
	return []cisItem{
		{id: "1.1.1", control: true, title: "API server unit and flags files are 600 or more restrictive", check: modeAtMost(0o600, unitFiles(api)...)},
		{id: "1.1.2", control: true, title: "API server unit and flags files are owned by root:root", check: ownedByRoot(unitFiles(api)...)},
		{id: "1.1.3", control: true, title: "controller manager unit and flags files are 600 or more restrictive", check: modeAtMost(0o600, unitFiles(cm)...)},
		{id: "1.1.4", control: true, title: "controller manager unit and flags files are owned by root:root", check: ownedByRoot(unitFiles(cm)...)},
		{id: "1.1.5", control: true, title: "scheduler unit and flags files are 600 or more restrictive", check: modeAtMost(0o600, unitFiles(sched)...)},
		{id: "1.1.6", control: true, title: "scheduler unit and flags files are owned by root:root", check: ownedByRoot(unitFiles(sched)...)},
		{id: "1.1.7", control: true, title: "etcd unit and flags files are 600 or more restrictive", check: modeAtMost(0o600, unitFiles("etcd")...)},
		{id: "1.1.8", control: true, title: "etcd unit and flags files are owned by root:root", check: ownedByRoot(unitFiles("etcd")...)},
		{id: "1.1.9", control: true, title: "CNI configuration files are 600 or more restrictive", check: allUnder(components.CNIConfDir, "", false, mode600)},
		{id: "1.1.10", control: true, title: "CNI configuration files are owned by root:root", check: allUnder(components.CNIConfDir, "", false, rootOwned)},
		{id: "1.1.11", control: true, title: "etcd data directory is 700 or more restrictive", check: modeAtMost(0o700, components.EtcdDataDir)},
		{id: "1.1.12", control: true, title: "etcd data directory is owned by etcd:etcd", skip: skipEtcdOwner},
		{id: "1.1.13", control: true, title: "default administrative kubeconfig is 600", check: absentOr(components.KubernetesDir+"/admin.conf", modeAtMost(0o600, components.KubernetesDir+"/admin.conf"))},
		{id: "1.1.14", control: true, title: "default administrative kubeconfig is owned by root:root", check: absentOr(components.KubernetesDir+"/admin.conf", ownedByRoot(components.KubernetesDir+"/admin.conf"))},
		{id: "1.1.15", control: true, title: "scheduler.conf is 600 or more restrictive", check: modeAtMost(0o600, components.SchedulerKubeconfig)},
		{id: "1.1.16", control: true, title: "scheduler.conf is owned by root:root", check: ownedByRoot(components.SchedulerKubeconfig)},
		{id: "1.1.17", control: true, title: "controller-manager.conf is 600 or more restrictive", check: modeAtMost(0o600, components.ControllerManagerKubeconfig)},
		{id: "1.1.18", control: true, title: "controller-manager.conf is owned by root:root", check: ownedByRoot(components.ControllerManagerKubeconfig)},
		{id: "1.1.19", control: true, title: "the PKI directory and its files are owned by root:root", check: allUnder(pki, "", true, rootOwned)},
		{id: "1.1.20", control: true, title: "PKI certificate files are 600 or more restrictive", skip: skipCertMode},
		{id: "1.1.21", control: true, title: "PKI key files are 600", check: allUnder(pki, "*.key", false, mode600)},

		{id: "1.2.1", control: true, title: "--anonymous-auth is false", check: flagIs(api, "anonymous-auth", "false")},
		{id: "1.2.2", control: true, title: "--token-auth-file is not set", check: flagUnset(api, "token-auth-file")},
		{id: "1.2.3", control: true, title: "DenyServiceExternalIPs is enabled", check: flagListHas(api, "enable-admission-plugins", "DenyServiceExternalIPs")},
		{id: "1.2.4", control: true, title: "--kubelet-client-certificate and --kubelet-client-key are set", check: flagsSet(api, "kubelet-client-certificate", "kubelet-client-key")},
		{id: "1.2.5", control: true, title: "--kubelet-certificate-authority is set", check: flagsSet(api, "kubelet-certificate-authority")},
		{id: "1.2.6", control: true, title: "--authorization-mode is not AlwaysAllow", check: flagListLacks(api, "authorization-mode", "AlwaysAllow")},
		{id: "1.2.7", control: true, title: "--authorization-mode includes Node", check: flagListHas(api, "authorization-mode", "Node")},
		{id: "1.2.8", control: true, title: "--authorization-mode includes RBAC", check: flagListHas(api, "authorization-mode", "RBAC")},
		{id: "1.2.9", control: true, title: "the EventRateLimit admission plugin is enabled", skip: skipEventRate},
		{id: "1.2.10", control: true, title: "the AlwaysAdmit admission plugin is not enabled", check: flagListLacks(api, "enable-admission-plugins", "AlwaysAdmit")},
		{id: "1.2.11", control: true, title: "the AlwaysPullImages admission plugin is enabled", skip: skipPull},
		{id: "1.2.12", control: true, title: "the ServiceAccount admission plugin is not disabled", check: flagListLacks(api, "disable-admission-plugins", "ServiceAccount")},
		{id: "1.2.13", control: true, title: "the NamespaceLifecycle admission plugin is not disabled", check: flagListLacks(api, "disable-admission-plugins", "NamespaceLifecycle")},
		{id: "1.2.14", control: true, title: "the NodeRestriction admission plugin is enabled", check: flagListHas(api, "enable-admission-plugins", "NodeRestriction")},
		{id: "1.2.15", control: true, title: "API server --profiling is false", check: flagIs(api, "profiling", "false")},
		{id: "1.2.16", control: true, title: "--audit-log-path is set", check: flagsSet(api, "audit-log-path")},
		{id: "1.2.17", control: true, title: "--audit-log-maxage is 30 or more", check: flagAtLeast(api, "audit-log-maxage", 30)},
		{id: "1.2.18", control: true, title: "--audit-log-maxbackup is 10 or more", check: flagAtLeast(api, "audit-log-maxbackup", 10)},
		{id: "1.2.19", control: true, title: "--audit-log-maxsize is 100 or more", check: flagAtLeast(api, "audit-log-maxsize", 100)},
		{id: "1.2.20", control: true, title: "--request-timeout is appropriate", check: flagNot(api, "request-timeout", "0")},
		{id: "1.2.21", control: true, title: "--service-account-lookup is not false", check: flagNot(api, "service-account-lookup", "false")},
		{id: "1.2.22", control: true, title: "--service-account-key-file is set", check: flagsSet(api, "service-account-key-file")},
		{id: "1.2.23", control: true, title: "--etcd-certfile and --etcd-keyfile are set", check: flagsSet(api, "etcd-certfile", "etcd-keyfile")},
		{id: "1.2.24", control: true, title: "--tls-cert-file and --tls-private-key-file are set", check: flagsSet(api, "tls-cert-file", "tls-private-key-file")},
		{id: "1.2.25", control: true, title: "--client-ca-file is set", check: flagsSet(api, "client-ca-file")},
		{id: "1.2.26", control: true, title: "--etcd-cafile is set", check: flagsSet(api, "etcd-cafile")},
		{id: "1.2.27", control: true, title: "--encryption-provider-config is set (and the file is 600)", check: both(flagsSet(api, "encryption-provider-config"), modeAtMost(0o600, components.EncryptionConfigPath))},
		{id: "1.2.28", control: true, title: "encryption providers are appropriately configured", skip: skipProviders},
		{id: "1.2.29", control: true, title: "the API server uses TLS 1.2+ and strong cipher suites only", check: tlsFlags(api)},

		{id: "1.3.1", control: true, title: "--terminated-pod-gc-threshold is set", check: flagsSet(cm, "terminated-pod-gc-threshold")},
		{id: "1.3.2", control: true, title: "controller manager --profiling is false", check: flagIs(cm, "profiling", "false")},
		{id: "1.3.3", control: true, title: "--use-service-account-credentials is true", check: flagIs(cm, "use-service-account-credentials", "true")},
		{id: "1.3.4", control: true, title: "--service-account-private-key-file is set", check: flagsSet(cm, "service-account-private-key-file")},
		{id: "1.3.5", control: true, title: "--root-ca-file is set", check: flagsSet(cm, "root-ca-file")},
		{id: "1.3.6", control: true, title: "RotateKubeletServerCertificate is not turned off", check: flagListLacks(cm, "feature-gates", "RotateKubeletServerCertificate=false")},
		{id: "1.3.7", control: true, title: "controller manager --bind-address is 127.0.0.1", skip: skipBind},
		{id: "1.4.1", control: true, title: "scheduler profiling is off", check: valueIs(components.SchedulerConfigPath, "false", false, "enableProfiling")},
		{id: "1.4.2", control: true, title: "scheduler --bind-address is 127.0.0.1", skip: skipBind},

		{id: "2.1", control: true, title: "etcd --cert-file and --key-file are set", check: flagsSet("etcd", "cert-file", "key-file")},
		{id: "2.2", control: true, title: "etcd --client-cert-auth is true", check: flagIs("etcd", "client-cert-auth", "true")},
		{id: "2.3", control: true, title: "etcd --auto-tls is not true", check: flagNot("etcd", "auto-tls", "true")},
		{id: "2.4", control: true, title: "etcd --peer-cert-file and --peer-key-file are set", check: flagsSet("etcd", "peer-cert-file", "peer-key-file")},
		{id: "2.5", control: true, title: "etcd --peer-client-cert-auth is true", check: flagIs("etcd", "peer-client-cert-auth", "true")},
		{id: "2.6", control: true, title: "etcd --peer-auto-tls is not true", check: flagNot("etcd", "peer-auto-tls", "true")},
		{id: "2.7", control: true, title: "etcd has its own certificate authority", check: uniqueEtcdCA},

		{id: "3.2.1", control: true, title: "an audit policy is in use", check: both(flagsSet(api, "audit-policy-file"), modeAtMost(0o644, components.AuditPolicyPath))},
		{id: "5.2.1", control: true, title: "a policy control mechanism (Pod Security admission) is active", check: podSecurityEnforced},

		{id: "K.1", control: true, title: "etcd uses TLS 1.2+ and strong cipher suites only", check: etcdTLS},
		{id: "K.2", control: true, title: "controller manager uses TLS 1.2+ and strong cipher suites only", check: tlsFlags(cm)},
		{id: "K.3", control: true, title: "scheduler uses TLS 1.2+ and strong cipher suites only", check: tlsFlags(sched)},

		{id: "4.1.1", title: "kubelet unit and flags files are 600 or more restrictive", check: modeAtMost(0o600, unitFiles(kubelet)...)},
		{id: "4.1.2", title: "kubelet unit and flags files are owned by root:root", check: ownedByRoot(unitFiles(kubelet)...)},
		{id: "4.1.3", title: "kube-proxy's kubeconfig is 600 or more restrictive", check: modeAtMost(0o600, components.KubeProxyKubeconfig)},
		{id: "4.1.4", title: "kube-proxy's kubeconfig is owned by root:root", check: ownedByRoot(components.KubeProxyKubeconfig)},
		{id: "4.1.5", title: "the kubelet's kubeconfig is 600 or more restrictive", check: modeAtMost(0o600, components.KubeletKubeconfig)},
		{id: "4.1.6", title: "the kubelet's kubeconfig is owned by root:root", check: ownedByRoot(components.KubeletKubeconfig)},
		{id: "4.1.7", title: "the client CA file is 600 or more restrictive", skip: skipCertMode},
		{id: "4.1.8", title: "the client CA file is owned by root:root", check: ownedByRoot(pki + "/ca.crt")},
		{id: "4.1.9", title: "the kubelet's config.yaml is 600 or more restrictive", check: modeAtMost(0o600, kc)},
		{id: "4.1.10", title: "the kubelet's config.yaml is owned by root:root", check: ownedByRoot(kc)},
		{id: "4.2.1", title: "kubelet anonymous authentication is off", check: valueIs(kc, "false", false, "authentication", "anonymous", "enabled")},
		{id: "4.2.2", title: "kubelet authorization is not AlwaysAllow", check: valueIs(kc, "Webhook", false, "authorization", "mode")},
		{id: "4.2.3", title: "the kubelet's client CA is set", check: valueSet(kc, "authentication", "x509", "clientCAFile")},
		{id: "4.2.4", title: "the kubelet's read-only port is 0", check: valueIs(kc, "0", true, "readOnlyPort")},
		{id: "4.2.5", title: "streamingConnectionIdleTimeout is not 0", check: valueNot(kc, "0s", "streamingConnectionIdleTimeout")},
		{id: "4.2.6", title: "makeIPTablesUtilChains is true", check: valueIs(kc, "true", true, "makeIPTablesUtilChains")},
		{id: "4.2.7", title: "--hostname-override is not set", skip: skipHostname},
		{id: "4.2.8", title: "eventRecordQPS ensures appropriate event capture", check: valuePositive(kc, "eventRecordQPS")},
		{id: "4.2.9", title: "the kubelet has a serving certificate from the cluster CA", check: kubeletServingCert},
		{id: "4.2.10", title: "rotateCertificates is not false", check: valueIs(kc, "true", true, "rotateCertificates")},
		{id: "4.2.11", title: "RotateKubeletServerCertificate is not turned off", check: valueNot(kc, "false", "featureGates", "RotateKubeletServerCertificate")},
		{id: "4.2.12", title: "the kubelet uses strong cipher suites only", check: valueStrongCiphers(kc, kubeletStrongCiphers, "tlsCipherSuites")},
		{id: "4.2.13", title: "a limit is set on pod PIDs", check: valuePositive(kc, "podPidsLimit")},
		{id: "4.3.1", title: "kube-proxy's metrics are bound to localhost", check: func(m *cisMachine) (bool, string) {
			v, ok := m.value(kp, "metricsBindAddress")
			return ok && strings.HasPrefix(fmt.Sprint(v), "127.0.0.1:"), showValue(kp, []string{"metricsBindAddress"}, v, ok)
		}},
		{id: "K.4", title: "the kubelet protects the kernel defaults", check: valueIs(kc, "true", false, "protectKernelDefaults")},
		{id: "K.5", title: "the kubelet uses TLS 1.2+", check: valueIs(kc, components.TLSMinVersion, false, "tlsMinVersion")},
	}
}

// RunCIS reads every machine's configuration through its agent (GET
// /v1/config) and checks every CIS item that applies to it, printing one
// line per item and machine.
func RunCIS(ctx context.Context, t Target) ([]CISResult, error) {
	if t.Out == nil {
		t.Out = io.Discard
	}
	roles := map[string]string{}
	reports := map[string]*agent.MachineConfig{}
	for _, m := range t.State.Machines {
		c, err := cluster.AgentClient(ctx, t.State, m, t.Bundle)
		if err != nil {
			return nil, err
		}
		mc, err := c.Config(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", m.Name, err)
		}
		roles[m.Name], reports[m.Name] = string(m.Role), mc
	}
	results := EvaluateCIS(roles, reports)
	for _, r := range results {
		fmt.Fprintf(t.Out, "%-4s  %-6s %-10s %s\n      %s\n", r.Status, r.ID, r.Machine, r.Title, r.Evidence)
	}
	return results, nil
}
