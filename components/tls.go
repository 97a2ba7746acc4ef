package components

import "strings"

// TLSCipherSuites are the TLS 1.2 cipher suites every TLS listener of the
// cluster offers (the Kubernetes components, etcd, and kubeup's agent and
// addon manager, daemons/httpauth): ECDHE key exchange (forward secrecy)
// with AES-GCM (authenticated encryption). It is the part of the CIS
// Kubernetes Benchmark's strong lists (1.2.29, 4.2.12) without CBC and
// without ChaCha20, whose names Kubernetes and etcd spell differently; the
// keys are ECDSA (provision/pki), the RSA suites are there for
// certificates brought from elsewhere. TLS 1.3, which every client here
// speaks, has no weak suite and Go does not let its suites be chosen.
func TLSCipherSuites() []string {
	return []string{
		"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
		"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
	}
}

// TLSMinVersion is the oldest TLS version any listener accepts, as the
// Kubernetes components spell it.
const TLSMinVersion = "VersionTLS12"

// tlsFlags are the Kubernetes components' TLS flags.
func tlsFlags() Flags {
	return Flags{"tls-min-version": TLSMinVersion, "tls-cipher-suites": strings.Join(TLSCipherSuites(), ",")}
}
