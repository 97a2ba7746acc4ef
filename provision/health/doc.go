// Package health waits for a cluster to be really up: the API server ready,
// every node Ready, every kube-system pod Ready. Each wait polls until it
// succeeds or its context ends, and then says what was still missing.
package health
