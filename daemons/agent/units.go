package agent

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
)

// UnitStatus is what the agent reports of a systemd unit.
type UnitStatus struct {
	Name        string    `json:"name"`
	ActiveState string    `json:"activeState,omitempty"`
	SubState    string    `json:"subState,omitempty"`
	Restarts    uint32    `json:"restarts"`
	ActiveSince time.Time `json:"since,omitzero"`
	// Error is why the unit could not be read.
	Error string `json:"error,omitempty"`
}

// UnitReader reads units' states from systemd.
type UnitReader interface {
	// Units returns one status per name, in order. The error is for the
	// connection as a whole; a single unit's failure is in its Error.
	Units(ctx context.Context, names []string) ([]UnitStatus, error)
}

// dbusUnits reads units over the system bus, connecting on first use and
// again after the bus drops.
type dbusUnits struct {
	mu   sync.Mutex
	conn *sddbus.Conn
}

func (d *dbusUnits) connection(ctx context.Context) (*sddbus.Conn, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil && d.conn.Connected() {
		return d.conn, nil
	}
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
	c, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("systemd over D-Bus: %w", err)
	}
	d.conn = c
	return c, nil
}

func (d *dbusUnits) Units(ctx context.Context, names []string) ([]UnitStatus, error) {
	conn, err := d.connection(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]UnitStatus, len(names))
	for i, name := range names {
		out[i] = readUnit(ctx, conn, name)
	}
	return out, nil
}

func readUnit(ctx context.Context, conn *sddbus.Conn, name string) UnitStatus {
	s := UnitStatus{Name: name}
	get := func(iface, prop string) any {
		if s.Error != "" {
			return nil
		}
		var p *sddbus.Property
		var err error
		if iface == "Service" {
			p, err = conn.GetServicePropertyContext(ctx, name, prop)
		} else {
			p, err = conn.GetUnitPropertyContext(ctx, name, prop)
		}
		if err != nil {
			s.Error = fmt.Sprintf("%s: %v", prop, err)
			return nil
		}
		return p.Value.Value()
	}
	s.ActiveState, _ = get("Unit", "ActiveState").(string)
	s.SubState, _ = get("Unit", "SubState").(string)
	if usec, _ := get("Unit", "ActiveEnterTimestamp").(uint64); usec > 0 {
		s.ActiveSince = time.UnixMicro(int64(usec)).UTC()
	}
	if strings.HasSuffix(name, ".service") {
		s.Restarts, _ = get("Service", "NRestarts").(uint32)
	}
	return s
}

func (d *dbusUnits) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conn != nil {
		d.conn.Close()
		d.conn = nil
	}
}

// UnitControl starts, stops and restarts systemd units, each call waiting
// until systemd's job has finished (for a start: until the unit is ready,
// its ExecStartPost readiness wait included).
type UnitControl interface {
	StartUnit(ctx context.Context, name string) error
	StopUnit(ctx context.Context, name string) error
	RestartUnit(ctx context.Context, name string) error
}

func (d *dbusUnits) StartUnit(ctx context.Context, name string) error {
	return d.job(ctx, "start", name, (*sddbus.Conn).StartUnitContext)
}

func (d *dbusUnits) StopUnit(ctx context.Context, name string) error {
	return d.job(ctx, "stop", name, (*sddbus.Conn).StopUnitContext)
}

func (d *dbusUnits) RestartUnit(ctx context.Context, name string) error {
	return d.job(ctx, "restart", name, (*sddbus.Conn).RestartUnitContext)
}

type jobFunc func(c *sddbus.Conn, ctx context.Context, name, mode string, ch chan<- string) (int, error)

// job queues a job in "replace" mode (as systemctl does) and waits for its
// result: "done", or why not ("failed", "timeout", "canceled",
// "dependency", "skipped").
func (d *dbusUnits) job(ctx context.Context, verb, name string, f jobFunc) error {
	conn, err := d.connection(ctx)
	if err != nil {
		return err
	}
	ch := make(chan string, 1)
	if _, err := f(conn, ctx, name, "replace", ch); err != nil {
		return fmt.Errorf("%s %s: %w", verb, name, err)
	}
	select {
	case res := <-ch:
		if res != "done" {
			return fmt.Errorf("%s %s: systemd job %s (journalctl -u %s says why)", verb, name, res, name)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", verb, name, ctx.Err())
	}
}
