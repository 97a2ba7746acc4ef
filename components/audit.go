package components

import (
	"fmt"

	auditv1 "k8s.io/apiserver/pkg/apis/audit/v1"
	"sigs.k8s.io/yaml"
)

// The API server's audit trail: the policy is the same for every cluster,
// so the master image carries it; the log is a JSON file per line that the
// API server rotates itself and the agent forwards into the log store
// (source "audit").
const (
	AuditPolicyPath = KubernetesDir + "/audit-policy.yaml"
	AuditLogDir     = "/var/log/kubernetes/audit"
	AuditLogPath    = AuditLogDir + "/audit.log"
	// Rotation as the CIS Kubernetes Benchmark asks (1.2.17-1.2.19): at
	// most 10 files of 100 MB, none older than 30 days; that is at most
	// 1.1 GB of the master's disk. Rotated files are not compressed: the
	// agent finishes reading a rotated file after the rename.
	auditLogMaxAgeDays = 30
	auditLogMaxBackups = 10
	auditLogMaxSizeMB  = 100
)

// auditFlags are kube-apiserver's audit flags.
func auditFlags() Flags {
	return Flags{
		"audit-policy-file":   AuditPolicyPath,
		"audit-log-path":      AuditLogPath,
		"audit-log-format":    "json",
		"audit-log-maxage":    fmt.Sprint(auditLogMaxAgeDays),
		"audit-log-maxbackup": fmt.Sprint(auditLogMaxBackups),
		"audit-log-maxsize":   fmt.Sprint(auditLogMaxSizeMB),
	}
}

// The identities of the cluster's own components (provision/pki's table):
// their reads are most of the API server's traffic and none of them is
// someone's action.
var (
	auditSystemUsers = []string{
		"system:apiserver", "system:kube-controller-manager", "system:kube-scheduler",
		"system:kube-proxy", "system:kubeup-addon-manager", "kubeup-agent",
	}
	// The kubelets, the controllers (with --use-service-account-credentials
	// each runs as its own kube-system ServiceAccount, as do the addons)
	// and the agents.
	auditSystemGroups = []string{"system:nodes", "system:serviceaccounts:kube-system", AgentGroup}
)

var (
	auditReads  = []string{"get", "list", "watch"}
	auditWrites = []string{"create", "update", "patch", "delete", "deletecollection"}
)

// AuditPolicy answers "who did what, and when": every change at Request
// level (the object as sent, so a change can be read back), Secrets,
// ConfigMaps, token requests and TokenReviews at Metadata level only (their
// bodies are credentials), and people's reads at Metadata level. Left out,
// because they are a running cluster's background rather than anyone's
// action: the health, metrics and discovery endpoints, Events, the
// components' own reads, Lease renewals (heartbeats), and the reviews the
// components make to check a scraper's bearer token (each metrics scrape).
// The addon manager re-applies every addon each minute: its writes are
// kept at Metadata level (their bodies are its manifests). Rules apply in
// order; the first that matches decides.
func AuditPolicy() auditv1.Policy {
	core := func(resources ...string) auditv1.GroupResources {
		return auditv1.GroupResources{Group: "", Resources: resources}
	}
	reviews := []auditv1.GroupResources{
		{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
		{Group: "authorization.k8s.io", Resources: []string{"subjectaccessreviews"}},
	}
	leases := []auditv1.GroupResources{{Group: "coordination.k8s.io", Resources: []string{"leases"}}}
	var rules []auditv1.PolicyRule
	rules = append(rules,
		auditv1.PolicyRule{Level: auditv1.LevelNone, NonResourceURLs: []string{
			"/healthz*", "/livez*", "/readyz*", "/version", "/metrics", "/api", "/api/*", "/apis", "/apis/*", "/openapi/*",
		}},
		auditv1.PolicyRule{Level: auditv1.LevelNone, Resources: []auditv1.GroupResources{
			core("events"), {Group: "events.k8s.io", Resources: []string{"events"}},
		}},
	)
	rules = append(rules, bySystem(auditv1.PolicyRule{Level: auditv1.LevelNone, Verbs: []string{"create"}, Resources: reviews})...)
	rules = append(rules, auditv1.PolicyRule{Level: auditv1.LevelMetadata, Resources: []auditv1.GroupResources{
		core("secrets", "configmaps", "serviceaccounts/token"),
		{Group: "authentication.k8s.io", Resources: []string{"tokenreviews"}},
	}})
	rules = append(rules, bySystem(auditv1.PolicyRule{Level: auditv1.LevelNone, Verbs: auditReads})...)
	rules = append(rules, bySystem(auditv1.PolicyRule{Level: auditv1.LevelNone, Verbs: []string{"get", "update"}, Resources: leases})...)
	rules = append(rules,
		auditv1.PolicyRule{Level: auditv1.LevelMetadata, Users: []string{"system:kubeup-addon-manager"}, Verbs: auditWrites},
		auditv1.PolicyRule{Level: auditv1.LevelRequest, Verbs: auditWrites},
		auditv1.PolicyRule{Level: auditv1.LevelMetadata},
	)
	p := auditv1.Policy{
		// The ResponseComplete stage has everything RequestReceived has.
		OmitStages:        []auditv1.Stage{auditv1.StageRequestReceived},
		OmitManagedFields: true,
		Rules:             rules,
	}
	p.APIVersion, p.Kind = "audit.k8s.io/v1", "Policy"
	return p
}

// bySystem makes r match the cluster's own components: one rule for their
// user names and one for their groups (a rule with both asks for both).
func bySystem(r auditv1.PolicyRule) []auditv1.PolicyRule {
	users, groups := r, r
	users.Users = auditSystemUsers
	groups.UserGroups = auditSystemGroups
	return []auditv1.PolicyRule{users, groups}
}

// auditPolicyFile is the policy as the master image carries it.
func auditPolicyFile() File {
	data, err := yaml.Marshal(AuditPolicy())
	if err != nil {
		panic(fmt.Sprintf("audit policy: %v", err)) // a fixed value: cannot fail
	}
	head := "# kube-apiserver audit policy, rendered by kubeup (components/audit.go).\n"
	return File{Path: AuditPolicyPath, Mode: 0o644, Content: append([]byte(head), data...)}
}
