// Package apilb is kubeup-apilb: a TCP load balancer on every machine's
// loopback that fronts all of the cluster's API servers (the idea of Talos'
// KubePrism). Kubelet, kube-proxy, the agent and the addon manager reach the
// API at https://127.0.0.1:7445, so a machine keeps its API when any one
// master is gone, and nothing on it needs to know which masters exist.
//
// It passes TLS through untouched (clients verify the API server's
// certificate, which names 127.0.0.1). Each backend is health-checked with
// GET /readyz, authenticated with the machine's agent certificate when it is
// there (the API servers admit no anonymous request) and by a TCP connect
// when it is not (a metal node before it joins). A backend that fails its
// checks is taken out, and when another is healthy the connections through
// it are closed, so that long-lived watches move at once instead of waiting
// out TCP and HTTP/2 keep-alives on a machine that stopped answering.
package apilb
