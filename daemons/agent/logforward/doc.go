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
