package app

import (
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"kubeup.dev/kubeup/cmd/internal/cli"
	"kubeup.dev/kubeup/provision/cluster"
)

// connect reaches the cluster the flags name (bad flags: exit status 2).
func (f *clusterFlags) connect(e *cli.Env) (*cluster.Access, error) {
	o, err := f.options(e)
	if err != nil {
		return nil, &cli.ExitError{Code: 2, Err: err}
	}
	return cluster.Connect(o.DataDir, f.clusterName())
}

// serveUIs runs the local read-only proxy and prints where things are.
func serveUIs(cmd *cobra.Command, e *cli.Env, f *clusterFlags, port int, first string) error {
	a, err := f.connect(e)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		return err
	}
	base := "http://" + l.Addr().String()
	urls := [][2]string{{"cluster UI", base + cluster.UIPath}, {"metrics (Prometheus)", base + cluster.PrometheusPath}, {"logs (VictoriaLogs)", base + cluster.LogsUIPath}}
	sort.SliceStable(urls, func(i, j int) bool { return urls[i][0] == first })
	for _, u := range urls {
		fmt.Fprintf(e.Stdout, "%-22s %s\n", u[0], u[1])
	}
	fmt.Fprintln(e.Stdout, "serving on 127.0.0.1 until interrupted (Ctrl-C)")
	return a.Proxy(cmd.Context(), l)
}

func newUICommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var port int
	cmd := &cobra.Command{
		Use:   "ui [--name NAME] [--port P]",
		Short: "Open the cluster's read-only UI, metrics UI and log UI on 127.0.0.1",
		Long: `ui serves the cluster's addon UIs on 127.0.0.1 through the API server's service
proxy, adding kubeup's admin credentials (browsers cannot present client
certificates). Only reads of the kubeup-ui, prometheus and victoria-logs
Services pass.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return serveUIs(cmd, e, &f, port, "cluster UI") },
	}
	f.add(cmd)
	cmd.Flags().IntVar(&port, "port", 8001, "local port (0 picks a free one)")
	return cmd
}

func newMetricsCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var port int
	cmd := &cobra.Command{
		Use:   "metrics [--name NAME] [PROMQL]",
		Short: "Query the cluster's Prometheus, or serve its UI on 127.0.0.1",
		Long: `With a PromQL expression, metrics prints the instant query's result (e.g.
kubeup metrics 'up == 0'); without one it serves the Prometheus UI like
kubeup ui.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return serveUIs(cmd, e, &f, port, "metrics (Prometheus)")
			}
			a, err := f.connect(e)
			if err != nil {
				return err
			}
			samples, err := a.Query(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
			for _, s := range samples {
				var ls []string
				for k, v := range s.Labels {
					ls = append(ls, k+"="+v)
				}
				sort.Strings(ls)
				fmt.Fprintf(tw, "%s\t%s\n", strings.Join(ls, " "), s.Value)
			}
			return tw.Flush()
		},
	}
	f.add(cmd)
	cmd.Flags().IntVar(&port, "port", 8001, "local port for the UI (0 picks a free one)")
	return cmd
}

func newLogsCommand(e *cli.Env) *cobra.Command {
	var f clusterFlags
	var q cluster.LogQuery
	var raw bool
	cmd := &cobra.Command{
		Use:   "logs [--source S] [--unit U] [--machine M] [--pod P] [--since D] [LOGSQL]",
		Short: "Search the cluster's logs (every unit and pod, and the API audit trail) in the log store",
		Long: `logs searches the in-cluster log store (VictoriaLogs), fed by every machine's
agent with the journal of every kubeup unit, every pod's output and, from
masters, the API server's audit log. Filters combine; extra words are LogsQL,
e.g.

  kubeup logs --unit kube-apiserver --machine master-0 --since 10m 'priority:<=3'

finds all kube-apiserver errors on master-0 in the last 10 minutes, and

  kubeup logs --source audit --since 24h 'verb:delete resource:deployments name:web'

who deleted the Deployment web, and when (audit fields: user, verb, resource,
namespace, name, code; the whole event is the message, --raw prints it).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if q.Source != "" && !slices.Contains([]string{"journal", "pod", "audit"}, q.Source) {
				return &cli.ExitError{Code: 2, Err: fmt.Errorf("--source %q: want journal, pod or audit", q.Source)}
			}
			a, err := f.connect(e)
			if err != nil {
				return err
			}
			q.Text = strings.Join(args, " ")
			entries, err := a.Logs(cmd.Context(), q)
			if err != nil {
				return err
			}
			for _, le := range entries {
				if raw {
					fmt.Fprintln(e.Stdout, le)
					continue
				}
				fmt.Fprintln(e.Stdout, le.Line(time.Local))
			}
			return nil
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&q.Source, "source", "", "only this source: journal (units), pod or audit (the API server's audit log)")
	cmd.Flags().StringVar(&q.Unit, "unit", "", "only this unit (kube-apiserver or kube-apiserver.service)")
	cmd.Flags().StringVar(&q.Machine, "machine", "", "only this machine")
	cmd.Flags().StringVar(&q.Pod, "pod", "", "only this pod")
	cmd.Flags().DurationVar(&q.Since, "since", time.Hour, "how far back")
	cmd.Flags().IntVar(&q.Limit, "limit", 1000, "at most this many lines")
	cmd.Flags().BoolVar(&raw, "raw", false, "print every field of each entry")
	return cmd
}
