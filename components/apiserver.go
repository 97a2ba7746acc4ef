package components

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	apiserverv1 "k8s.io/apiserver/pkg/apis/apiserver/v1"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/systemd"
)

// APIServer is kube-apiserver: TLS only, no anonymous requests, Node and RBAC
// authorisation, bootstrap tokens for joining nodes, secrets encrypted at rest.
type APIServer struct{}

// API server port and files.
const (
	APIServerPort        = 6443
	etcdCheckTimeout     = 4 * time.Second
	EncryptionConfigPath = KubernetesDir + "/encryption-config.yaml"
)

func (APIServer) Name() string        { return "kube-apiserver" }
func (APIServer) Description() string { return "Kubernetes API server" }
func (APIServer) Roles() []Role       { return []Role{Master} }

func (a APIServer) Unit(role Role) systemd.Unit {
	s := systemd.Service{
		Documentation: []string{"https://kubernetes.io/docs/reference/command-line-tools-reference/kube-apiserver/"},
		Wants:         []string{"etcd.service"},
		After:         []string{"etcd.service"},
		// One process before the start and none of its own after it: the
		// gate's close sets the start weights, the readiness wait opens
		// the gate and sets the ready weights (see apiServerGate).
		ExecStartPre: []string{apiServerGate.close(raiseWeights(apiServerStartWeights)...)},
		ExecStartPost: []string{probe(a.loopbackHealth(),
			slices.Concat(agentClientCert(), []string{apiServerGate.openFlag()}, weightFlags(apiServerStartWeights, readyWeight))...)},
		ExecStopPost:    []string{lowerWeightsIfRaised(apiServerStartWeights)},
		TimeoutStartSec: probedStartTimeout,
		RestartSec:      apiServerRestartDelay,
		Limits:          map[string]string{"LimitNOFILE": "65536"},
	}
	controlPlaneHardening(&s)
	inControlPlane(&s)
	return service(a, role, BinDir+"/kube-apiserver", s)
}

// agentClientCert are the probe flags that authenticate with the agent's
// certificate: the API server admits no anonymous request, not even /readyz.
func agentClientCert() []string {
	return []string{"--cacert=" + pki("ca.crt"), "--cert=" + pki("kubeup-agent.crt"), "--key=" + pki("kubeup-agent.key")}
}

// ImageFiles: the audit policy, the same for every cluster.
func (APIServer) ImageFiles() []File { return []File{auditPolicyFile()} }

func (APIServer) Flags(ctx Context) Flags {
	c := ctx.Cluster
	var etcd []string
	for _, m := range c.Masters {
		etcd = append(etcd, fmt.Sprintf("https://%s:%d", m.IP, EtcdClientPort))
	}
	f := Flags{
		"advertise-address":                  ctx.Machine.IP.String(),
		"secure-port":                        fmt.Sprint(APIServerPort),
		"allow-privileged":                   "true",
		"anonymous-auth":                     "false",
		"authorization-mode":                 "Node,RBAC",
		"enable-admission-plugins":           "NodeRestriction,PodSecurity,DenyServiceExternalIPs",
		"admission-control-config-file":      AdmissionConfigPath,
		"enable-bootstrap-token-auth":        "true",
		"client-ca-file":                     pki("ca.crt"),
		"tls-cert-file":                      pki("apiserver.crt"),
		"tls-private-key-file":               pki("apiserver.key"),
		"etcd-servers":                       strings.Join(etcd, ","),
		"etcd-cafile":                        pki("etcd/ca.crt"),
		"etcd-certfile":                      pki("apiserver-etcd-client.crt"),
		"etcd-keyfile":                       pki("apiserver-etcd-client.key"),
		"encryption-provider-config":         EncryptionConfigPath,
		"kubelet-client-certificate":         pki("apiserver-kubelet-client.crt"),
		"kubelet-client-key":                 pki("apiserver-kubelet-client.key"),
		"kubelet-certificate-authority":      pki("ca.crt"),
		"kubelet-preferred-address-types":    "InternalIP,Hostname",
		"proxy-client-cert-file":             pki("front-proxy-client.crt"),
		"proxy-client-key-file":              pki("front-proxy-client.key"),
		"requestheader-client-ca-file":       pki("front-proxy-ca.crt"),
		"requestheader-allowed-names":        "front-proxy-client",
		"requestheader-extra-headers-prefix": "X-Remote-Extra-",
		"requestheader-group-headers":        "X-Remote-Group",
		"requestheader-username-headers":     "X-Remote-User",
		"service-account-issuer":             "https://kubernetes.default.svc." + c.DNSDomain,
		"service-account-key-file":           pki("sa.pub"),
		"service-account-signing-key-file":   pki("sa.key"),
		"service-cluster-ip-range":           c.ServiceCIDR.String(),
		"profiling":                          "false",
		// /livez's and /readyz's etcd checks wait 4 s for etcd (upstream:
		// 2 s). On a saturated master under TCG etcd's reads took 0.2-0.6 s
		// and at times over 2 s, and /readyz then failed for a moment
		// while every request was served (cert-renewal drill: 4 outages,
		// 4m33s). 4 s stays within the 5 s the drills and load balancers'
		// health checks give /readyz.
		"etcd-healthcheck-timeout": etcdCheckTimeout.String(),
		"etcd-readycheck-timeout":  etcdCheckTimeout.String(),
	}
	maps.Copy(f, auditFlags())
	maps.Copy(f, tlsFlags())
	f["disabled-metrics"] = strings.Join(apiserverDisabledMetrics, ",")
	return f
}

// apiserverDisabledMetrics are the API server's largest histograms (and
// its gauge per feature gate), which nothing in kubeup reads: unregistered
// (--disabled-metrics, upstream's switch for costly metrics), they are
// neither observed on every request nor rendered on every scrape. Counted
// in a 1+1 cluster's Prometheus after make e2e's verify (2026-12-07): of
// 54,608 series, etcd_request_duration_seconds had 4,656 buckets, then
// apiserver_watch_events_dispatch_duration_seconds 2,562,
// apiserver_request_sli_duration_seconds 1,892, watch lists 1,846, request
// bodies 1,664, storage lists 1,488, watch-cache waits 854 and
// initialisation 793, response sizes 760, watch event sizes 558; on a
// saturated TCG master a GET of /metrics then took over 60 s, so every
// scrape was rendered and thrown away. apiserver_request_duration_seconds
// (3,672), the request latency SLI, and every counter and gauge stay.
var apiserverDisabledMetrics = []string{
	"etcd_request_duration_seconds",
	"apiserver_watch_events_dispatch_duration_seconds",
	"apiserver_request_sli_duration_seconds",
	"apiserver_watch_list_duration_seconds",
	"apiserver_request_body_size_bytes",
	"apiserver_storage_list_duration_seconds",
	"apiserver_watch_cache_read_wait_seconds",
	"apiserver_watch_cache_initialization_duration_seconds",
	"apiserver_response_sizes",
	"apiserver_watch_events_sizes",
	featureEnabledMetric,
}

// featureEnabledMetric is a gauge per feature gate (about 450 series per
// component, 1,778 in a 1+1 cluster), unregistered in every control-plane
// component that can: `kubeup render` shows the feature gates set.
const featureEnabledMetric = "kubernetes_feature_enabled"

// Files are the EncryptionConfiguration and the AdmissionConfiguration
// (Pod Security levels, see admissionConfig).
func (APIServer) Files(ctx Context) ([]File, error) {
	enc, err := encryptionConfig(ctx)
	if err != nil {
		return nil, err
	}
	adm, err := admissionConfig(ctx.Cluster.PodSecurity)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver: %w", err)
	}
	return []File{
		{Path: AdmissionConfigPath, Mode: 0o644, Content: adm},
		{Path: EncryptionConfigPath, Mode: 0o600, Content: enc},
	}, nil
}

// encryptionConfig: Secrets are written to etcd sealed with secretbox
// (XSalsa20-Poly1305) under the cluster's key, which unlike aesgcm needs no
// rotation after a number of writes; "identity" still reads anything
// stored before encryption was on.
func encryptionConfig(ctx Context) ([]byte, error) {
	if len(ctx.Secrets.EncryptionKey) != 32 {
		return nil, fmt.Errorf("kube-apiserver: encryption key is %d bytes, want 32", len(ctx.Secrets.EncryptionKey))
	}
	cfg := apiserverv1.EncryptionConfiguration{
		Resources: []apiserverv1.ResourceConfiguration{{
			Resources: []string{"secrets"},
			Providers: []apiserverv1.ProviderConfiguration{
				{Secretbox: &apiserverv1.SecretboxConfiguration{Keys: []apiserverv1.Key{{Name: "key1", Secret: b64(ctx.Secrets.EncryptionKey)}}}},
				{Identity: &apiserverv1.IdentityConfiguration{}},
			},
		}},
	}
	cfg.APIVersion, cfg.Kind = "apiserver.config.k8s.io/v1", "EncryptionConfiguration"
	data, err := yaml.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("kube-apiserver encryption config: %w", err)
	}
	return data, nil
}

func (APIServer) Health() Endpoint {
	return Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/readyz", APIServerPort), Auth: AuthClientCert}
}

// loopbackHealth is /readyz on the IPv6 loopback address, the one source
// apiServerGate lets through while the API server starts.
func (APIServer) loopbackHealth() Endpoint {
	return Endpoint{URL: fmt.Sprintf("https://[::1]:%d/readyz", APIServerPort), Auth: AuthClientCert}
}

// apiServerRestartDelay is shorter than other components' restartDelay:
// every client of the cluster waits on the API server's restart, and its
// start (a minute of one emulated vCPU under TCG) already spaces a crash
// loop's starts far more than the delay does.
const apiServerRestartDelay = time.Second

// apiServerGate keeps the API server's port closed to every client but
// itself while it starts. The API server listens before it is ready: its
// post-start hooks (RBAC bootstrap roles, system priority classes, the
// service IP repair) then write through its own loopback client, over TLS
// to [::1], each within a fixed deadline (30 s to a minute). After a kill,
// every client of the cluster reconnects as soon as the port opens, and
// their TLS handshakes, re-lists and retries took the CPU of a master
// under TCG: the loopback client's handshakes timed out (10 s), a hook
// missed its deadline, the API server exited and started over, four times
// in a row (9m17s to /readyz, measured on a 1+1 cluster). With the gate
// the clients are refused (a TCP reset, as if nothing listened, so they
// keep their own back-off) until /readyz answers on [::1]: 55 s from the
// kill to /readyz, against 97 s without it when the hooks did not fail.
// A load balancer's health check does the same in front of several
// masters. IPv4 is closed for every source; IPv6 for all but ::1.
var apiServerGate = portGate{Name: "apiserver-starting", Port: APIServerPort, Allow: "::1"}

// apiServerStartWeights give the API server and etcd most of a busy
// master's CPU while the API server starts (its clients are held off by
// apiServerGate, and every component waits on it anyway), and ordinary
// shares once it is ready. Three weights, because CPU weights only divide
// a parent's share among siblings:
//   - the API server's own (1000 against its siblings' 100) was the only one
//     raised until 2026-12: a kill -9 on a 1+1 cluster at rest under TCG
//     (load average 11) had /readyz back after 66 s, against 102 s at 100;
//   - etcd's, since the API server's start is mostly reads of etcd: at 100
//     beside the API server's 1000 it got a fifteenth of the slice, its
//     reads took 0.2-0.6 s, the API server's etcd checks (2 s) failed and
//     /readyz stayed out for minutes (240 s once on a master at load 20);
//   - the control-plane slice's, 200 at rest (see ControlPlaneSlice): the
//     API server's start is largely one goroutine at a time, and on each
//     vCPU the slice only got 200/379 of the time against the pods and
//     system.slice, so the API server used half a vCPU whatever its own
//     weight (measured with cgroup cpu.stat over the start: 49-55% of one
//     vCPU). With the slice at 1000 for the start: 82 s from the kill to
//     the unit's ready, against 96-240 s (four kills on the same master).
//
// Static weights would let a busy API server (a re-list storm, a
// conformance run) starve the kubelet beside it, and a high slice weight
// starved journald and the agent in system.slice (see ControlPlaneSlice),
// so they are high only while a start is under way: raised first in
// ExecStartPre, lowered last in ExecStartPost, and lowered again in
// ExecStopPost where they are still high, so that a start that fails (or
// a crash loop) does not leave them high. systemd's StartupCPUWeight only
// covers the machine's boot, so the unit sets them at run time.
var apiServerStartWeights = []startWeight{
	{Unit: ControlPlaneSlice, Starting: 1000, Ready: controlPlaneCPUWeight},
	{Unit: "etcd.service", Starting: 1000, Ready: 100},
	{Unit: "kube-apiserver.service", Starting: 1000, Ready: 100},
}

// APIServerReadyWeights are the CPU weights the API server's unit leaves
// once it is ready, by unit (make drills checks them after its kill).
func APIServerReadyWeights() map[string]int {
	m := map[string]int{}
	for _, w := range apiServerStartWeights {
		m[w.Unit] = w.Ready
	}
	return m
}

// startWeight is a unit's CPUWeight while it starts and once it is ready.
type startWeight struct {
	Unit            string
	Starting, Ready int
}

// raiseWeights are gate close's flags that set every weight of ws to its
// starting value, and lowerWeights the command that sets them to their
// ready value: kubeup-probe sets them all over one D-Bus connection, where
// one systemctl each cost a second or two apiece on a saturated master,
// and in a process the unit starts anyway (the gate's close before the
// start, the readiness wait after it), where a process of their own cost
// seconds more on that master.
//
// raiseWeights, with several masters, does nothing while the machine boots
// (--after-boot, through CPUWeightFlagsVar): then
// every unit starts at once, and the slice at 1000 starved system.slice
// and the kernel's work — on a first boot of 3 one-vCPU masters under TCG
// e2scrub_reap's setup_net (PrivateNetwork) sat runnable with the
// kernel's pernet lock for 20 minutes, modprobe waited on it, then
// rtnl waiters, and no API server ever became ready (2026-12-06). The
// weights are for an API server restarted on a running machine.
func raiseWeights(ws []startWeight) []string {
	return append([]string{"$" + CPUWeightFlagsVar}, weightFlags(ws, startingWeight)...)
}

// CPUWeightFlagsVar is the API server's env file variable with
// kubeup-probe's flags for raising the start weights:
// --after-boot on masters of a cluster with several, nothing with one. A
// single master's first boot reached a healthy API server in 3m14s-3m43s
// from the VMs' start with the weights raised, 5m13s without (make e2e,
// 2026-12-06): it waits on nobody; several wait on each other's etcd,
// so their start, and the raised weights, last the whole boot.
const CPUWeightFlagsVar = "KUBEUP_CPU_WEIGHT_FLAGS"

// EnvVars: the flags of the start weights (see CPUWeightFlagsVar).
func (APIServer) EnvVars(ctx Context) map[string]string {
	flags := ""
	if len(ctx.Cluster.Masters) > 1 {
		flags = "--after-boot"
	}
	return map[string]string{CPUWeightFlagsVar: flags}
}

func startingWeight(w startWeight) int { return w.Starting }
func readyWeight(w startWeight) int    { return w.Ready }

// weightArgs are ws as kubeup-probe's UNIT=WEIGHT arguments, and
// weightFlags the same as its --cpu-weight flags.
func weightArgs(ws []startWeight, value func(startWeight) int) []string {
	var args []string
	for _, w := range ws {
		args = append(args, systemd.CPUWeight{Unit: w.Unit, Weight: uint64(value(w))}.String())
	}
	return args
}

func weightFlags(ws []startWeight, value func(startWeight) int) []string {
	flags := weightArgs(ws, value)
	for i, a := range flags {
		flags[i] = "--cpu-weight=" + a
	}
	return flags
}

func lowerWeights(ws []startWeight) string {
	return strings.Join(append([]string{ProbeBinary, "cpu-weight"}, weightArgs(ws, readyWeight)...), " ")
}

// lowerWeightsIfRaised is lowerWeights behind a test of the first weight's
// cgroup file (a top-level slice's, whose cgroup path is its name), read
// by the shell: after the kill of a ready API server the weights are
// already low, and starting kubeup-probe anyway cost 5 s between the kill
// and the restart on a saturated master (drills, 2026-12-05). A file that
// cannot be read lowers them anyway. ($$ is systemd's escape for the
// shell's $.)
func lowerWeightsIfRaised(ws []startWeight) string {
	w := ws[0]
	file := "/sys/fs/cgroup/" + w.Unit + "/cpu.weight"
	return fmt.Sprintf("/bin/sh -c 'read w < %s && [ \"$$w\" = %d ] || exec %s'", file, w.Ready, lowerWeights(ws))
}

// portGate rejects new TCP connections to a port from ExecStartPre until
// the unit's readiness wait passes (ExecStartPost): `kubeup-probe gate
// close`, an nftables table of its own (probe.Gate), and the wait's own
// --open-gate, one netlink transaction each way. Until 2026-12 it was
// iptables and ip6tables: four commands before the start and two after it,
// 0.5-1 s each on a loaded master under TCG, all on the path of an API
// server's restart.
type portGate struct {
	Name string
	Port int
	// Allow is the one source let through while closed.
	Allow string
}

// close replaces any gate a failed start left with one closed gate, in
// the process that first sets the weights flags give (raiseWeights).
func (g portGate) close(flags ...string) string {
	return strings.Join(append([]string{ProbeBinary, "gate", "close", g.Name,
		fmt.Sprintf("--port=%d", g.Port), "--allow=" + g.Allow}, flags...), " ")
}

// openFlag is the readiness wait's flag that opens the gate once the unit
// is ready.
func (g portGate) openFlag() string { return "--open-gate=" + g.Name }

func (APIServer) Metrics() *Endpoint {
	return &Endpoint{URL: fmt.Sprintf("https://127.0.0.1:%d/metrics", APIServerPort), Auth: AuthBearer}
}

func (APIServer) Certificates(Role) []string {
	return []string{"kubernetes-ca", "etcd-ca", "front-proxy-ca", "service-account", "apiserver",
		"apiserver-etcd-client", "apiserver-kubelet-client", "front-proxy-client"}
}
