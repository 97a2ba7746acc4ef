package systemd

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
)

// The helpers below speak sd_notify(3) for Type=notify daemons. Outside
// systemd (no NOTIFY_SOCKET) every one of them is a no-op, so daemons can
// call them unconditionally and still run by hand.

// Ready tells systemd the daemon has started (READY=1).
func Ready() error { return notify(daemon.SdNotifyReady) }

// Stopping tells systemd the daemon is shutting down (STOPPING=1).
func Stopping() error { return notify(daemon.SdNotifyStopping) }

// Status sets the one-line status `systemctl status` shows (STATUS=...).
func Status(msg string) error {
	// The protocol is newline-separated assignments: keep the message on one line.
	return notify("STATUS=" + strings.ReplaceAll(msg, "\n", " "))
}

// ExtendTimeout asks systemd for d more to finish starting or stopping
// (EXTEND_TIMEOUT_USEC=...): a daemon whose start waits on something slow
// sends it again before each d runs out, instead of a long TimeoutStartSec
// for every start.
func ExtendTimeout(d time.Duration) error {
	return notify(fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds()))
}

func notify(state string) error {
	if _, err := daemon.SdNotify(false, state); err != nil {
		return fmt.Errorf("sd_notify %s: %w", strings.SplitN(state, "=", 2)[0], err)
	}
	return nil
}

// WatchdogInterval is how often a daemon must ping systemd's watchdog: half
// of the unit's WatchdogSec, as sd_watchdog_enabled(3) recommends. It is 0
// when the watchdog is off or meant for another process.
func WatchdogInterval() (time.Duration, error) {
	d, err := daemon.SdWatchdogEnabled(false)
	if err != nil {
		return 0, fmt.Errorf("systemd watchdog: %w", err)
	}
	return d / 2, nil
}

// Watchdog pings systemd's watchdog (WATCHDOG=1) every WatchdogInterval
// until ctx ends, but only while healthy returns nil: a daemon whose
// goroutines are wedged stops pinging and systemd restarts it. An unhealthy
// check is reported as the unit's STATUS= instead. It returns nil at once
// when the watchdog is off.
func Watchdog(ctx context.Context, healthy func() error) error {
	interval, err := WatchdogInterval()
	if err != nil || interval == 0 {
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	wasHealthy := true
	for {
		if herr := healthy(); herr != nil {
			wasHealthy = false
			if err := Status("unhealthy: " + herr.Error()); err != nil {
				return err
			}
		} else {
			if !wasHealthy {
				wasHealthy = true
				if err := Status("healthy"); err != nil {
					return err
				}
			}
			if err := notify(daemon.SdNotifyWatchdog); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}
