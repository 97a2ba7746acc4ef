// Package kubetest is shared test support: a throw-away CA that issues
// certificates (in PEM or to files), and a real etcd and kube-apiserver for
// integration tests, stopped by PID when the test ends. The binaries are
// $KUBEUP_TEST_BIN_DIR's, or the artifacts kubeup's build caches; without
// either the integration test is skipped.
package kubetest
