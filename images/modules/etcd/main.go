// Command etcd is a multi-call binary carrying etcd and etcdctl. It runs
// etcdctl when invoked by that name (normally a symlink) or with "etcdctl" as
// its first argument, and the etcd server otherwise. Both share the etcd
// client, gRPC and protobuf code, so one binary is much smaller than two.
package main

import (
	"os"
	"path/filepath"

	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	if filepath.Base(os.Args[0]) == "etcdctl" {
		ctlv3.MustStart()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "etcdctl" {
		os.Args = os.Args[1:]
		ctlv3.MustStart()
		return
	}
	etcdmain.Main(os.Args)
}
