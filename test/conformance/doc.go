// Package conformance runs upstream Kubernetes' conformance suite
// (`e2e.test` with ginkgo, focus [Conformance]) against a kubeup cluster
// and summarises its JUnit report: passed, failed, skipped, time, and each
// failure with its message. `make conformance` runs TestConformance.
package conformance
