// Package probe waits until something a unit depends on is ready: an
// HTTP(S) endpoint answering 200, a unix socket answering gRPC's health
// check, or a machine's Node with an address. Units run it as
// ExecStartPost (so After= means "after it is ready") or ExecStartPre.
//
// It is its own binary, kubeup-probe, not a command of the agent: probes
// run at every boot beside the agent, and a process of the agent's binary
// would read most of that binary into the page cache, where the agent's
// own page faults then map it (the kernel maps cached neighbours of every
// faulting page) and its resident memory grows by megabytes it never runs.
package probe
