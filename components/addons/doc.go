// Package addons renders the cluster addons the addon manager keeps in
// kube-system: typed Kubernetes objects marshalled to YAML, one file per
// addon. They depend on the cluster (service IPs, DNS domain), so they reach
// the masters through cloud-init with the rest of the cluster's files.
package addons
