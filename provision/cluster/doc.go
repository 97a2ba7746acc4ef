// Package cluster is kubeup's orchestration of a cluster's life: `up`
// (images, render, deploy through Pulumi, wait until Ready), `down`,
// `status` and the kubeconfig. Everything a cluster made lives under its
// directory in kubeup's data directory, next to the Pulumi state.
package cluster
