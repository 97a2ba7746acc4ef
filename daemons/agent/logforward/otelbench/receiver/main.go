// Command receiver runs the OpenTelemetry Collector fluentforward receiver
// (the cluster's log aggregator's input) on -addr with a pipeline that
// reports what it consumed: one JSON line per consumed batch on stdout,
// with the records when -records is set. It is a process of its own
// because the receiver and fluent-logger-golang both register MessagePack
// extension type 0 (EventTime) globally, which panics in one process.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/open-telemetry/opentelemetry-collector-contrib/receiver/fluentforwardreceiver"
	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/plog"
	"go.opentelemetry.io/collector/receiver/receivertest"
)

// Batch is one consumed batch, as printed.
type Batch struct {
	Count   int      `json:"count"`
	Records []Record `json:"records,omitempty"`
}

// Record is one consumed log record.
type Record struct {
	Time       time.Time      `json:"time"`
	Body       string         `json:"body"`
	Attributes map[string]any `json:"attributes"`
}

func main() {
	addr := flag.String("addr", "127.0.0.1:24224", "listen address")
	records := flag.Bool("records", false, "print the records, not only their count")
	flag.Parse()

	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	next, err := consumer.NewLogs(func(_ context.Context, ld plog.Logs) error {
		b := Batch{Count: ld.LogRecordCount()}
		if *records {
			rls := ld.ResourceLogs()
			for i := range rls.Len() {
				sls := rls.At(i).ScopeLogs()
				for j := range sls.Len() {
					lrs := sls.At(j).LogRecords()
					for k := range lrs.Len() {
						lr := lrs.At(k)
						b.Records = append(b.Records, Record{Time: lr.Timestamp().AsTime(), Body: lr.Body().AsString(), Attributes: lr.Attributes().AsRaw()})
					}
				}
			}
		}
		mu.Lock()
		defer mu.Unlock()
		return enc.Encode(b)
	})
	if err != nil {
		fail(err)
	}
	f := fluentforwardreceiver.NewFactory()
	cfg := f.CreateDefaultConfig().(*fluentforwardreceiver.Config)
	cfg.ListenAddress = *addr
	r, err := f.CreateLogs(context.Background(), receivertest.NewNopSettings(f.Type()), cfg, next)
	if err != nil {
		fail(err)
	}
	if err := r.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		fail(err)
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer cancel()
	<-ctx.Done()
	r.Shutdown(context.Background())
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "receiver:", err)
	os.Exit(1)
}
