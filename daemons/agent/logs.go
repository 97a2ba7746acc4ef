package agent

import (
	"fmt"
	"log/slog"

	"kubeup.dev/kubeup/components/agentconfig"
	"kubeup.dev/kubeup/daemons/agent/logforward"
)

// logPipeline is log forwarding's tasks: the forwarder (connection to the
// aggregator at cfg.Logs.Forward and the disk buffer) and its sources, the
// journal, the pod log files and, on masters, the API server's audit log.
type logPipeline struct {
	addr    string
	forward *logforward.Forwarder
	journal *logforward.Journal
	pods    *logforward.PodLogs
	audit   *logforward.AuditLog // nil without cfg.Logs.AuditLog
	metrics *logforward.Metrics
}

func newLogPipeline(cfg *agentconfig.Config, journal JournalFunc, podLogDir string, log *slog.Logger) (*logPipeline, error) {
	dial, err := logforward.FluentDialer(cfg.Logs.Forward)
	if err != nil {
		return nil, fmt.Errorf("log forwarding: %w", err)
	}
	m := logforward.NewMetrics()
	origin := logforward.Origin{Cluster: cfg.Cluster, Machine: cfg.Machine, Role: string(cfg.Role)}
	fwd := logforward.NewForwarder(logforward.ForwarderConfig{
		BufferDir:      cfg.Logs.BufferDir,
		BufferMaxBytes: cfg.Logs.BufferMaxBytes,
		Dial:           dial,
		Metrics:        m,
		Log:            log.With("task", "log-forward"),
	})
	p := &logPipeline{
		addr:    cfg.Logs.Forward,
		forward: fwd,
		metrics: m,
		journal: logforward.NewJournal(logforward.JournalConfig{
			Units:       withTimerServices(cfg.Units),
			Identifiers: logIdentifiers(cfg.Logs),
			Origin:      origin,
			StateDir:    cfg.Logs.StateDir,
			Run:         logforward.JournalRunner(journal),
			Submit:      fwd.Submit,
			Metrics:     m,
			Log:         log.With("task", "journal-forward"),
		}),
		pods: logforward.NewPodLogs(logforward.PodLogsConfig{
			Dir:      podLogDir,
			StateDir: cfg.Logs.StateDir,
			Origin:   origin,
			Submit:   fwd.Submit,
			Metrics:  m,
			Log:      log.With("task", "pod-log-forward"),
		}),
	}
	if cfg.Logs.AuditLog != "" {
		p.audit = logforward.NewAuditLog(logforward.AuditLogConfig{
			Path:     cfg.Logs.AuditLog,
			StateDir: cfg.Logs.StateDir,
			Origin:   origin,
			Submit:   fwd.Submit,
			Metrics:  m,
			Log:      log.With("task", "audit-log-forward"),
		})
	}
	return p, nil
}

func (l *logPipeline) tasks() []Task {
	tasks := []Task{l.forward, l.journal, l.pods}
	if l.audit != nil {
		tasks = append(tasks, l.audit)
	}
	return tasks
}

// LogStatus is log forwarding in /v1/status.
type LogStatus struct {
	// Forward is the aggregator's address.
	Forward string `json:"forward"`
	logforward.ForwardStatus
}

func (l *logPipeline) status() *LogStatus {
	return &LogStatus{Forward: l.addr, ForwardStatus: l.forward.Status()}
}
