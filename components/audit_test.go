package components

import (
	"testing"

	auditinternal "k8s.io/apiserver/pkg/apis/audit"
	"k8s.io/apiserver/pkg/audit/policy"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// The audit policy as the master image carries it, loaded by the API
// server's own (strict) loader and judged by its own rule evaluator: who
// does what gets which level.
func TestAuditPolicyLevels(t *testing.T) {
	t.Parallel()
	p, err := policy.LoadPolicyFromBytes(auditPolicyFile().Content)
	if err != nil {
		t.Fatal(err)
	}
	ev := policy.NewPolicyRuleEvaluator(p)
	admin := &user.DefaultInfo{Name: "kubernetes-admin", Groups: []string{"system:masters", "system:authenticated"}}
	dev := &user.DefaultInfo{Name: "dev", Groups: []string{"system:authenticated"}}
	cm := &user.DefaultInfo{Name: "system:kube-controller-manager", Groups: []string{"system:authenticated"}}
	rsController := &user.DefaultInfo{Name: "system:serviceaccount:kube-system:replicaset-controller",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"}}
	kubelet := &user.DefaultInfo{Name: "system:node:node-0", Groups: []string{"system:nodes", "system:authenticated"}}
	addonManager := &user.DefaultInfo{Name: "system:kubeup-addon-manager", Groups: []string{"system:masters", "system:authenticated"}}
	agent := &user.DefaultInfo{Name: "kubeup-agent", Groups: []string{AgentGroup, "system:authenticated"}}
	res := func(u user.Info, verb, group, resource, sub, ns, name string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: u, Verb: verb, APIGroup: group, Resource: resource, Subresource: sub,
			Namespace: ns, Name: name, ResourceRequest: true}
	}
	path := func(u user.Info, p string) authorizer.Attributes {
		return authorizer.AttributesRecord{User: u, Verb: "get", Path: p}
	}
	cases := []struct {
		what  string
		attrs authorizer.Attributes
		want  auditinternal.Level
	}{
		{"an admin deletes a Deployment", res(admin, "delete", "apps", "deployments", "", "default", "web"), auditinternal.LevelRequest},
		{"someone creates a privileged pod", res(dev, "create", "", "pods", "", "default", "x"), auditinternal.LevelRequest},
		{"someone execs into a pod", res(dev, "create", "", "pods", "exec", "default", "x"), auditinternal.LevelRequest},
		{"someone patches a Node", res(dev, "patch", "", "nodes", "", "", "node-0"), auditinternal.LevelRequest},
		{"someone reads pods", res(dev, "list", "", "pods", "", "default", ""), auditinternal.LevelMetadata},
		{"someone reads a Secret", res(dev, "get", "", "secrets", "", "default", "s"), auditinternal.LevelMetadata},
		{"someone writes a Secret (its body is a credential)", res(admin, "update", "", "secrets", "", "default", "s"), auditinternal.LevelMetadata},
		{"someone writes a ConfigMap", res(admin, "create", "", "configmaps", "", "default", "c"), auditinternal.LevelMetadata},
		{"someone asks for a token", res(dev, "create", "", "serviceaccounts", "token", "default", "sa"), auditinternal.LevelMetadata},
		{"someone reviews a token", res(dev, "create", "authentication.k8s.io", "tokenreviews", "", "", ""), auditinternal.LevelMetadata},
		{"a controller reads a Secret", res(rsController, "watch", "", "secrets", "", "", ""), auditinternal.LevelMetadata},
		{"the controller-manager watches pods", res(cm, "watch", "", "pods", "", "", ""), auditinternal.LevelNone},
		{"a controller lists ReplicaSets", res(rsController, "list", "apps", "replicasets", "", "", ""), auditinternal.LevelNone},
		{"a controller creates a pod", res(rsController, "create", "", "pods", "", "default", ""), auditinternal.LevelRequest},
		{"a kubelet gets its Node", res(kubelet, "get", "", "nodes", "", "", "node-0"), auditinternal.LevelNone},
		{"a kubelet renews its Lease", res(kubelet, "update", "coordination.k8s.io", "leases", "", "kube-node-lease", "node-0"), auditinternal.LevelNone},
		{"a kubelet updates its Node's status", res(kubelet, "patch", "", "nodes", "status", "", "node-0"), auditinternal.LevelRequest},
		{"someone takes a Lease", res(dev, "update", "coordination.k8s.io", "leases", "", "default", "l"), auditinternal.LevelRequest},
		{"an agent checks a scraper's token", res(agent, "create", "authentication.k8s.io", "tokenreviews", "", "", ""), auditinternal.LevelNone},
		{"a kubelet checks a scraper's access", res(kubelet, "create", "authorization.k8s.io", "subjectaccessreviews", "", "", ""), auditinternal.LevelNone},
		{"the addon manager re-applies an addon", res(addonManager, "patch", "apps", "deployments", "", "kube-system", "coredns"), auditinternal.LevelMetadata},
		{"the addon manager deletes a pruned addon", res(addonManager, "delete", "apps", "deployments", "", "kube-system", "old"), auditinternal.LevelMetadata},
		{"an event", res(rsController, "create", "", "events", "", "default", ""), auditinternal.LevelNone},
		{"readiness", path(admin, "/readyz"), auditinternal.LevelNone},
		{"a health check with verbose", path(admin, "/livez/etcd"), auditinternal.LevelNone},
		{"metrics", path(dev, "/metrics"), auditinternal.LevelNone},
		{"discovery", path(dev, "/apis/apps/v1"), auditinternal.LevelNone},
		{"another non-resource path", path(dev, "/debug/pprof/"), auditinternal.LevelMetadata},
	}
	for _, tc := range cases {
		got := ev.EvaluatePolicyRule(tc.attrs)
		if got.Level != tc.want {
			t.Errorf("%s: level %s, want %s", tc.what, got.Level, tc.want)
		}
		if got.Level != auditinternal.LevelNone && !got.OmitManagedFields {
			t.Errorf("%s: managed fields are logged", tc.what)
		}
	}
}
