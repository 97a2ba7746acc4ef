// Package cli is the skeleton the on-machine binaries (kubeup-agent,
// kubeup-addons) share: logging to stderr for the journal, exit statuses,
// signal handling. Each binary lists its own commands, so it links only
// what they need.
package cli
