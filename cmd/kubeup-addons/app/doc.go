// Package app holds kubeup-addons' commands: the addon manager (a systemd
// unit on masters) and the read-only UI (the kubeup-ui addon's container).
package app
