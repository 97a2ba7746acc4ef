// Package pki generates and persists a cluster's PKI and credentials: the
// three CAs (kubernetes, etcd, front-proxy), the service-account key pair,
// every leaf certificate the control plane, the nodes and kubeup itself use,
// the secrets-at-rest encryption key and a kubelet bootstrap token.
//
// Everything is described by one table (Table): which CA signs what, with
// which subject, SANs and usages, which file it is on a machine (kubeadm's
// layout under /etc/kubernetes/pki) and which machines carry it. Generate
// issues the table, Bundle.Save/Load persist it in kubeup's state directory,
// LoadOrGenerate reuses what is still valid and reissues what the table
// changed, and Bundle.MachineFiles/Kubeconfig hand out what a machine needs.
//
// All keys are ECDSA P-256 and are derived from Options.Rand, as are serial
// numbers, the encryption key and the bootstrap token: with a seeded Rand
// and a fixed clock, key material is reproducible. ECDSA signatures draw from
// Go's global randomness, which tests pin with testing/cryptotest.
package pki
