// Package infra deploys kubeup clusters with Pulumi: the Automation API with
// an inline Go program, a file:// state backend under kubeup's data directory
// (or any backend URL a team points it at), a passphrase secrets provider and
// one stack per cluster. The local target's resources come from kubeup's own
// provider plugin (infra/provider, binary pulumi-resource-kubeup).
package infra
