// Package forwardtest is a minimal fluentd forward-protocol server for
// tests, in the spirit of net/http/httptest. It accepts Message mode
// ([tag, time, record, option]) and Forward mode ([tag, [[time, record],
// ...], option]) messages, with times as integers or EventTime, acks each
// message carrying a "chunk" option once (for every event in it), and
// keeps what it received: the events, and the messages they came in. It
// can be stopped and started again on the same address (an aggregator
// outage), told to stop acking (a wedged pipeline) and to delay its acks
// (a round trip to a distant aggregator with a durable queue).
package forwardtest
