// Package etcdsnapshot is the file side of etcd snapshots, shared by the
// agent on masters (which takes them on a schedule and restores one) and
// kubeup on the host (which fetches one and uploads one for a restore):
// the check that a file is a whole snapshot (etcd appends the sha256 of
// the database to the stream; bbolt's meta pages carry a magic number and
// a checksum), writing one atomically, the names of scheduled snapshots,
// pruning to the newest N, when the next one is due, and the status file
// the agent's metrics are read from. It links no etcd code: the agent's
// memory budget, and the host needs none.
package etcdsnapshot
