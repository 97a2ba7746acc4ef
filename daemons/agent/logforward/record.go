package logforward

import (
	"strings"
	"time"

	"github.com/tinylib/msgp/msgp"
)

// Fluent tags of the sources.
const (
	JournalTag = "kubeup.journal"
	PodTag     = "kubeup.pods"
	AuditTag   = "kubeup.audit"
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

// AuditFields are an API server audit event's fields.
type AuditFields struct {
	// Message is the whole event, as the API server wrote it (JSON).
	Message string
	// User is who made the request (user.username).
	User string
	// Verb is the request's (get, list, create, update, patch, delete, ...).
	Verb string
	// Resource is objectRef.resource, with "/subresource" when there is one.
	Resource, Namespace, Name string
	// Code is the response's HTTP status; 0 when the event has none.
	Code int
}

// EncodeAudit encodes an audit record's fields: message, user, verb,
// resource, namespace, name, code, machine, role, cluster, source.
func EncodeAudit(b []byte, o Origin, f AuditFields) []byte {
	b = msgp.AppendMapHeader(b, 11)
	b = appendField(b, "message", f.Message)
	b = appendField(b, "user", f.User)
	b = appendField(b, "verb", f.Verb)
	b = appendField(b, "resource", f.Resource)
	b = appendField(b, "namespace", f.Namespace)
	b = appendField(b, "name", f.Name)
	b = msgp.AppendInt(msgp.AppendString(b, "code"), f.Code)
	b = appendOrigin(b, o)
	return appendField(b, "source", SourceAudit)
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
