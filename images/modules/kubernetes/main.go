// Command kubernetes is a multi-call binary (the old "hyperkube" pattern):
// one executable carries kube-apiserver, kube-controller-manager,
// kube-scheduler, kubelet, kube-proxy and kubectl, and dispatches on the name
// it is invoked by (argv[0], normally a symlink). Linking them together shares
// client-go, apimachinery and the Go runtime, which is most of each binary.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones (kube-apiserver, kube-controller-manager)

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // JSON log format
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // version metric
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	proxy "k8s.io/kubernetes/cmd/kube-proxy/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth" // kubectl auth plugins
)

var servers = map[string]func() *cobra.Command{
	"kube-apiserver":          apiserver.NewAPIServerCommand,
	"kube-controller-manager": controllermanager.NewControllerManagerCommand,
	"kube-scheduler":          func() *cobra.Command { return scheduler.NewSchedulerCommand() },
	"kubelet":                 func() *cobra.Command { return kubelet.NewKubeletCommand(context.Background()) },
	"kube-proxy":              proxy.NewProxyCommand,
}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	// "kubernetes kubelet --flag" works as well as a symlink named kubelet.
	if _, ok := servers[name]; !ok && name != "kubectl" && len(os.Args) > 1 {
		name, args = os.Args[1], os.Args[1:]
	}
	if name == "kubectl" {
		os.Args = args
		logs.GlogSetter(kubectl.GetLogVerbosity(args)) //nolint:errcheck
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		return
	}
	newCmd, ok := servers[name]
	if !ok {
		names := []string{"kubectl"}
		for n := range servers {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "kubernetes: unknown command %q; call as one of %v (symlink or first argument)\n", name, names)
		os.Exit(2)
	}
	os.Args = args
	cmd := newCmd()
	cmd.SetArgs(args[1:])
	os.Exit(cli.Run(cmd))
}
