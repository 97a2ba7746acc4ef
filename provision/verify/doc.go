// Package verify proves that a running cluster does what the Kubernetes
// components are meant to do, with real API calls: the control-plane
// controllers, the pod network across machines, Services through
// kube-proxy, and the kubelet's volumes, probes and static pods. Each check
// reports pass or fail with its duration; everything it creates lives in one
// namespace that is deleted at the end.
package verify
