package addonmanager

import (
	"slices"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

// applyOrder ranks kinds the way installers do (Helm's install order,
// shortened): what other objects live in or refer to first, webhooks and
// aggregated APIs last so that a backend that is not up yet cannot block
// the creation of everything else. Unlisted kinds, custom resources
// included, rank between the two groups.
var applyOrder = []schema.GroupKind{
	{Kind: "Namespace"},
	{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"},
	{Group: "scheduling.k8s.io", Kind: "PriorityClass"},
	{Kind: "ServiceAccount"},
	{Kind: "Secret"},
	{Kind: "ConfigMap"},
	{Group: "storage.k8s.io", Kind: "StorageClass"},
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"},
	{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"},
	{Group: "rbac.authorization.k8s.io", Kind: "Role"},
	{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"},
	{Kind: "Service"},
}

// applyLast are applied after everything else.
var applyLast = []schema.GroupKind{
	{Group: "apiregistration.k8s.io", Kind: "APIService"},
	{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"},
	{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"},
}

func rank(gk schema.GroupKind) int {
	if i := slices.Index(applyOrder, gk); i >= 0 {
		return i
	}
	if i := slices.Index(applyLast, gk); i >= 0 {
		return len(applyOrder) + 1 + i
	}
	return len(applyOrder)
}

// Order sorts addons into apply order; addons of the same rank keep their
// manifest order.
func Order(addons []Addon) {
	slices.SortStableFunc(addons, func(a, b Addon) int { return rank(a.GroupKind()) - rank(b.GroupKind()) })
}
