// Command etcd is a multi-call binary carrying etcd, etcdctl and etcdutl. It
// runs etcdctl or etcdutl when invoked by that name (normally a symlink) or
// with that name as its first argument, and the etcd server otherwise. They
// share the etcd client, server storage, gRPC and protobuf code, so one
// binary is much smaller than three.
package main

import (
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/etcdctl/v3/ctlv3"
	"go.etcd.io/etcd/etcdutl/v3/etcdutl"
	"go.etcd.io/etcd/pkg/v3/cobrautl"
	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	name := filepath.Base(os.Args[0])
	if len(os.Args) > 1 && (os.Args[1] == "etcdctl" || os.Args[1] == "etcdutl") {
		name = os.Args[1]
		os.Args = os.Args[1:]
	}
	switch name {
	case "etcdctl":
		ctlv3.MustStart()
	case "etcdutl":
		if err := etcdutlCommand().Execute(); err != nil {
			cobrautl.ExitWithError(cobrautl.ExitError, err)
		}
	default:
		etcdmain.Main(os.Args)
	}
}

// etcdutlCommand is upstream etcdutl's root command (its main package,
// go.etcd.io/etcd/etcdutl/v3, cannot be imported): the same flags and
// subcommands, built from the etcdutl package. kubeup's restore runs
// `etcdutl snapshot restore`.
func etcdutlCommand() *cobra.Command {
	cobra.EnablePrefixMatching = true
	root := &cobra.Command{
		Use:        "etcdutl",
		Short:      "An administrative command line tool for etcd3.",
		SuggestFor: []string{"etcdutl"},
	}
	root.PersistentFlags().StringVarP(&etcdutl.OutputFormat, "write-out", "w", "simple", "set the output format (fields, json, protobuf, simple, table)")
	root.AddCommand(
		etcdutl.NewDefragCommand(),
		etcdutl.NewSnapshotCommand(),
		etcdutl.NewHashKVCommand(),
		etcdutl.NewVersionCommand(),
		etcdutl.NewCompletionCommand(),
		etcdutl.NewMigrateCommand(),
	)
	root.SetHelpTemplate(`{{.UsageString}}`)
	return root
}
