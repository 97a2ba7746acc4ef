// Package agentconfig is the node agent's configuration file
// (/etc/kubeup/agent.yaml, kind AgentConfig). It is a leaf package on
// purpose: the agent links it instead of the component catalogue, whose
// Kubernetes configuration types (kubelet, kube-proxy, scheduler, API
// server) would add code and init work to a binary with a 20 MB memory
// budget.
package agentconfig
