// Package config is kubeup's cluster description: the versioned file format
// (apiVersion kubeup.dev/v1alpha1, kind Cluster), its defaults, and a
// validation that reports every problem at once with its field path.
package config
