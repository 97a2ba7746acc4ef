// Package snapshottest makes snapshot files for tests: bbolt-shaped (two
// valid meta pages, then data pages) with etcd's sha256 appended, as
// Maintenance.Snapshot streams them, without an etcd.
package snapshottest

import (
	"crypto/sha256"
	"encoding/binary"
	"hash/fnv"
)

// PageSize of the synthetic databases.
const PageSize = 4096

// Snapshot returns a database of 2+dataPages pages whose data pages are
// filled from seed, followed by its sha256.
func Snapshot(dataPages int, seed byte) []byte {
	db := make([]byte, (2+dataPages)*PageSize)
	for id := range 2 {
		writeMeta(db[id*PageSize:], uint64(id))
	}
	for i := 2 * PageSize; i < len(db); i++ {
		db[i] = seed + byte(i/PageSize)
	}
	return Seal(db)
}

// Seal appends db's sha256, as etcd does at the end of its stream.
func Seal(db []byte) []byte {
	sum := sha256.Sum256(db)
	return append(db, sum[:]...)
}

// MetaMagicOffset is where page 0's magic number is, to break it.
const MetaMagicOffset = 16

func writeMeta(p []byte, id uint64) {
	le := binary.LittleEndian
	le.PutUint64(p[0:], id)
	le.PutUint16(p[8:], 0x04) // meta page
	m := p[16:]
	le.PutUint32(m[0:], 0xED0CDAED)
	le.PutUint32(m[4:], 2)
	le.PutUint32(m[8:], PageSize)
	le.PutUint64(m[16:], 3)    // root bucket page
	le.PutUint64(m[32:], 2)    // freelist page
	le.PutUint64(m[40:], 4)    // high water mark
	le.PutUint64(m[48:], 7-id) // transaction id
	h := fnv.New64a()
	h.Write(m[:56])
	le.PutUint64(m[56:], h.Sum64())
}
