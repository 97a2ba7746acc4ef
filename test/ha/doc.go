// Package ha holds make e2e-ha: a cluster of three masters and a node,
// its masters hard-stopped one at a time while a client writes.
package ha
