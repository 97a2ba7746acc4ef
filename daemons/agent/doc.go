// Package agent is kubeup's node agent, the daemon behind kubeup-agent.service
// on every machine: it serves the machine's health, metrics (systemd units,
// certificate expiry, scraped loopback endpoints, log forwarding, etcd
// health on masters), status and journal over TLS, programs the pod network
// (CNI config, routes to other machines' pod CIDRs, masquerading), and
// forwards the units' journal and the containers' logs to the cluster's log
// aggregator (package logforward). The readiness check units run as
// ExecStartPost is package probe (kubeup-probe), not this one.
//
// The daemon is a list of tasks (see Daemon.tasks) run under a supervisor
// that restarts failed ones.
package agent
