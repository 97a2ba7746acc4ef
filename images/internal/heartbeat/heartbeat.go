package heartbeat

import (
	"context"
	"time"
)

// Start calls beat with the time since start every interval until the
// returned stop is called or ctx ends. stop waits for a beat in progress,
// so nothing is reported once it has returned; call it once.
func Start(ctx context.Context, interval time.Duration, start time.Time, beat func(elapsed time.Duration)) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				beat(time.Since(start))
			}
		}
	}()
	return func() { close(done); <-finished }
}
