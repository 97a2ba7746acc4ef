package heartbeat

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

func TestStart(t *testing.T) {
	start := time.Now().Add(-time.Hour)
	var beats atomic.Int32
	stop := Start(context.Background(), time.Millisecond, start, func(elapsed time.Duration) {
		if elapsed < time.Hour {
			t.Errorf("elapsed %s, want at least 1h (since start)", elapsed)
		}
		beats.Add(1)
	})
	for beats.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	stop()
	n := beats.Load()
	time.Sleep(10 * time.Millisecond)
	if beats.Load() != n {
		t.Error("a beat after stop returned")
	}
}

func TestStartEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var beats atomic.Int32
	stop := Start(ctx, time.Millisecond, time.Now(), func(time.Duration) { beats.Add(1) })
	cancel()
	// A live 1 ms ticker beats many times in 20 ms: wait for a quiet spell.
	deadline := time.Now().Add(5 * time.Second)
	for n := beats.Load(); ; {
		time.Sleep(20 * time.Millisecond)
		m := beats.Load()
		if m == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still beating after ctx ended")
		}
		n = m
	}
	stop() // returns: the goroutine has ended
}
