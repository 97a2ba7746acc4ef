// Package app wires kubeup's commands. It stays thin: every command parses
// flags, then calls into provision/, images/ or infra/.
package app
