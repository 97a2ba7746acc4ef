// Package e2e holds what kubeup's end-to-end tests share: an SSH client for
// looking inside guests and helpers for waiting on them. Only tests use it.
package e2e
