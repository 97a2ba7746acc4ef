// Package app holds kubeup-probe's command. The probe is a binary of its
// own, not a command of kubeup-agent: see package probe for why.
package app
