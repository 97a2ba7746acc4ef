// Package ui is kubeup's read-only cluster UI, served by
// `kubeup-addons ui` in kube-system and reached through the API server's
// service proxy: one server-rendered page (nodes, per-machine component
// health from Prometheus, pods, recent events, links to the metrics and
// log UIs) and the same overview as JSON.
//
// It is read-only by construction: it answers only GET and HEAD, reads the
// API through informers (list and watch, nothing else), and its
// ServiceAccount's ClusterRole (components/addons.UI) grants nothing more.
package ui
