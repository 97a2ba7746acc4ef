package systemd

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
)

// CPUWeight is a unit's (or a slice's) CPUWeight= (cgroup v2 cpu.weight).
type CPUWeight struct {
	Unit   string
	Weight uint64
}

// String is the form ParseCPUWeight reads: "unit=weight".
func (w CPUWeight) String() string { return w.Unit + "=" + strconv.FormatUint(w.Weight, 10) }

// ParseCPUWeight reads "unit=weight", with weight in systemd's 1-10000.
func ParseCPUWeight(s string) (CPUWeight, error) {
	unit, v, ok := strings.Cut(s, "=")
	if !ok || unit == "" || !strings.Contains(unit, ".") {
		return CPUWeight{}, fmt.Errorf("%q: want UNIT=WEIGHT, e.g. etcd.service=1000", s)
	}
	w, err := strconv.ParseUint(v, 10, 64)
	if err != nil || w < 1 || w > 10000 {
		return CPUWeight{}, fmt.Errorf("%q: the weight must be a whole number from 1 to 10000", s)
	}
	return CPUWeight{Unit: unit, Weight: w}, nil
}

// SetCPUWeights sets each unit's CPUWeight until the next boot (what
// `systemctl set-property --runtime UNIT CPUWeight=W` does), in order and
// over one D-Bus connection: on a saturated machine every process started
// costs seconds, and a unit's ExecStartPre that ran one systemctl per
// weight spent them before the service itself could start.
//
// With afterBoot it sets nothing while systemd still starts the machine
// (SystemState initializing or starting), asked over the same connection,
// and reports skipped.
func SetCPUWeights(ctx context.Context, ws []CPUWeight, afterBoot bool) (skipped bool, err error) {
	conn, err := sddbus.NewSystemConnectionContext(ctx)
	if err != nil {
		return false, fmt.Errorf("connect to systemd: %w", err)
	}
	defer conn.Close()
	if afterBoot {
		v, err := conn.GetManagerProperty("SystemState")
		if err != nil {
			return false, fmt.Errorf("systemd's SystemState: %w", err)
		}
		if bootingState(v) {
			return true, nil
		}
	}
	for _, w := range ws {
		p := sddbus.Property{Name: "CPUWeight", Value: dbus.MakeVariant(w.Weight)}
		if err := conn.SetUnitPropertiesContext(ctx, w.Unit, true, p); err != nil {
			return false, fmt.Errorf("set %s CPUWeight=%d: %w", w.Unit, w.Weight, err)
		}
	}
	return false, nil
}

// bootingState reads SystemState as GetManagerProperty formats it (a
// D-Bus variant: "\"starting\"").
func bootingState(v string) bool {
	s := strings.Trim(v, `"`)
	return s == "initializing" || s == "starting"
}
