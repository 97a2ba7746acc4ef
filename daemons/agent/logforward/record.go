// Package logforward ships a machine's logs to the cluster's log aggregator
// over the fluentd forward protocol: the journal of kubeup's units (Journal)
// and the containers' CRI log files under /var/log/pods (PodLogs) feed one
// Forwarder, which sends records in batches with an ack request and, while
// the aggregator is unreachable or not acking, keeps records in an on-disk
// Buffer and resends them in order once it is back.
//
// On the wire a batch is one Forward-mode message, [tag, [[time, record],
// ...], {"chunk": id}], acked once: up to 512 records (512 KiB) of one
// tag, each time an EventTime (nanoseconds). Batching is what makes
// forwarding fast: the aggregator (the OpenTelemetry Collector's
// fluentforward receiver) acks a chunk only once its fsynced persistent
// queue holds it, so an ack costs a round trip across the cluster network
// and an fsync, and one ack per record held a node to about 20 records/s.
// fluent-logger-golang supplies the protocol's types (EventTime with its
// msgp extension marshalling, the ack response); its client is not used
// for the connection because it sends Message mode only, one record per
// message and per ack, and cannot send a message encoded elsewhere (its
// msgToSend is unexported). Dialling, writing and reading acks take a few
// lines (sender.go).
//
// Delivery is at least once. A source moves its position (journal cursor,
// file offset) only after the Forwarder has either had the records acked or
// fsynced them into the Buffer, so a restart loses nothing; it can repeat
// records in two windows, both documented where they arise: a record whose
// ack was lost (the aggregator stored it but the connection died before
// the ack arrived) is buffered and sent again, and a crash (SIGKILL, OOM,
// power loss) between a record's delivery and the write of the position
// file re-reads it. The one way to lose records is the Buffer's bound:
// past BufferMaxBytes the oldest segment is deleted and every record in it
// is counted in kubeup_log_entries_dropped_total{reason="buffer_full"}.
package logforward

import (
	"strings"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Fluent tags of the two sources.
const (
	JournalTag = "kubeup.journal"
	PodTag     = "kubeup.pods"
)

// Record is one log line on its way to the aggregator: its fluent tag, its
// event time and its fields, already encoded as a MessagePack map (the form
// it has on the wire and in the Buffer).
type Record struct {
	Tag  string
	Time time.Time
	Body []byte
}

// Origin names the machine every record comes from.
type Origin struct {
	Cluster string
	Machine string
	Role    string
}

// levels are syslog's priority keywords, journalctl -p's names.
var levels = [...]string{"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"}

// Level is the keyword of a syslog priority (0–7); out of range is "info".
func Level(priority int) string {
	if priority < 0 || priority >= len(levels) {
		return "info"
	}
	return levels[priority]
}

// JournalFields are a journal record's fields.
type JournalFields struct {
	Message    string
	Unit       string
	Identifier string
	Priority   int
	PID        int
}

// EncodeJournal encodes a journal record's fields: message, unit,
// identifier, machine, role, cluster, priority, level, pid, source.
func EncodeJournal(b []byte, o Origin, f JournalFields) []byte {
	b = msgp.AppendMapHeader(b, 10)
	b = appendField(b, "message", f.Message)
	b = appendField(b, "unit", f.Unit)
	b = appendField(b, "identifier", f.Identifier)
	b = appendOrigin(b, o)
	b = msgp.AppendInt(msgp.AppendString(b, "priority"), f.Priority)
	b = appendField(b, "level", Level(f.Priority))
	b = msgp.AppendInt(msgp.AppendString(b, "pid"), f.PID)
	return appendField(b, "source", "journal")
}

// PodFields are a container log record's fields.
type PodFields struct {
	Message   string
	Namespace string
	Pod       string
	Container string
	Stream    string
}

// EncodePod encodes a container log record's fields: message, namespace,
// pod, container, stream, machine, role, cluster, source.
func EncodePod(b []byte, o Origin, f PodFields) []byte {
	b = msgp.AppendMapHeader(b, 9)
	b = appendField(b, "message", f.Message)
	b = appendField(b, "namespace", f.Namespace)
	b = appendField(b, "pod", f.Pod)
	b = appendField(b, "container", f.Container)
	b = appendField(b, "stream", f.Stream)
	b = appendOrigin(b, o)
	return appendField(b, "source", "pod")
}

func appendOrigin(b []byte, o Origin) []byte {
	b = appendField(b, "machine", o.Machine)
	b = appendField(b, "role", o.Role)
	return appendField(b, "cluster", o.Cluster)
}

// appendField appends a string field. Values are made valid UTF-8: the
// collector turns them into protobuf strings, which must be, and one bad
// byte would fail the whole batch it exports.
func appendField(b []byte, key, value string) []byte {
	return msgp.AppendString(msgp.AppendString(b, key), strings.ToValidUTF8(value, "\uFFFD"))
}

// DecodeFields decodes a record's fields (tests and debugging).
func DecodeFields(body []byte) (map[string]any, error) {
	v, _, err := msgp.ReadIntfBytes(body)
	if err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	return m, nil
}
