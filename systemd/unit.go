package systemd

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/unit"
)

// Header starts every rendered unit file.
const Header = "# Rendered by kubeup. Do not edit: change the component and re-render.\n"

// Unit is a named unit file as a list of options.
type Unit struct {
	Name    string // e.g. "kubelet.service"
	Options []*unit.UnitOption
}

// Bytes serialises the unit with go-systemd's unit.Serialize.
func (u Unit) Bytes() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(Header)
	if _, err := io.Copy(&b, unit.Serialize(u.Options)); err != nil {
		return nil, fmt.Errorf("serialize %s: %w", u.Name, err)
	}
	return b.Bytes(), nil
}

// Value returns the last value of section.name, or "".
func (u Unit) Value(section, name string) string {
	v := u.Values(section, name)
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

// Values returns every value of section.name in order.
func (u Unit) Values(section, name string) []string {
	var out []string
	for _, o := range u.Options {
		if o.Section == section && o.Name == name {
			out = append(out, o.Value)
		}
	}
	return out
}

// Parse reads a unit file back (for tests and for checking images).
func Parse(name string, data []byte) (Unit, error) {
	opts, err := unit.Deserialize(bytes.NewReader(data))
	if err != nil {
		return Unit{}, fmt.Errorf("parse %s: %w", name, err)
	}
	return Unit{Name: name, Options: opts}, nil
}

// Service is a long-running daemon. Zero values are left out of the unit.
type Service struct {
	Description   string
	Documentation []string

	// Ordering and dependencies ([Unit]).
	After, Before, Wants, Requires, PartOf []string
	// ConditionPathExists skips (does not fail) the start while a path is
	// missing: how units wait for cloud-init's files at first boot.
	ConditionPathExists []string
	// StartLimitIntervalSec 0 with Restart=always means "never give up".
	StartLimitIntervalSec *time.Duration
	StartLimitBurst       int

	// [Service]
	Type             string // simple, exec, notify, oneshot
	NotifyAccess     string
	EnvironmentFiles []string
	Environment      map[string]string
	ExecStartPre     []string
	ExecStart        string
	ExecStartPost    []string
	ExecReload       string
	// ExecStopPost runs after the service stopped, whatever the cause
	// (a stop, a crash, a kill, a failed start).
	ExecStopPost    []string
	Restart         string
	RestartSec      time.Duration
	TimeoutStartSec time.Duration
	TimeoutStopSec  time.Duration
	WatchdogSec     time.Duration
	KillMode        string
	Delegate        bool
	OOMScoreAdjust  int
	Limits          map[string]string // LimitNOFILE=..., TasksMax=...

	// Resource accounting and placement. CPUWeight (1-10000, default
	// 100) is the unit's share of contended CPU among its siblings.
	Accounting bool
	Slice      string
	CPUWeight  int

	// Hardening for daemons that need no host-wide write access.
	NoNewPrivileges bool
	ProtectSystem   string // "", "full", "strict"
	ProtectHome     bool
	PrivateTmp      bool
	ReadWritePaths  []string
	// Sandbox is the rest of systemd.exec(5)'s sandboxing, for daemons
	// whose needs are known to the last capability.
	Sandbox *Sandbox

	// [Install]
	WantedBy []string
}

// Sandbox are systemd.exec(5) sandboxing options (systemd 252). Zero
// values are left out; booleans render as "yes".
type Sandbox struct {
	// CapabilityBoundingSet: the capabilities the service (and what it
	// runs) may ever have; a non-nil empty list means none.
	CapabilityBoundingSet []string
	// Kernel, devices and system state the service must not change or see.
	PrivateDevices         bool
	ProtectKernelTunables  bool
	ProtectKernelModules   bool
	ProtectKernelLogs      bool
	ProtectControlGroups   bool
	ProtectClock           bool
	ProtectHostname        bool
	PrivateMounts          bool
	ProtectProc            string // "invisible": other users' processes hidden
	RestrictNamespaces     bool
	RestrictRealtime       bool
	RestrictSUIDSGID       bool
	LockPersonality        bool
	MemoryDenyWriteExecute bool
	// RestrictAddressFamilies: the socket families it may open.
	RestrictAddressFamilies []string
	// SystemCallFilter: allowed system calls or groups ("@system-service"),
	// then SystemCallDeny taken out of them ("@privileged");
	// SystemCallErrorNumber is what a refused one returns instead of
	// killing the process.
	SystemCallFilter        []string
	SystemCallDeny          []string
	SystemCallErrorNumber   string
	SystemCallArchitectures string // "native"
	UMask                   string // e.g. "0077"
}

func (x *Sandbox) render(b *builder) {
	if x == nil {
		return
	}
	yes := func(name string, v bool) {
		if v {
			b.add("Service", name, "yes")
		}
	}
	if x.CapabilityBoundingSet != nil {
		// An empty value is meaningful here: no capability at all.
		b.opts = append(b.opts, unit.NewUnitOption("Service", "CapabilityBoundingSet", strings.Join(x.CapabilityBoundingSet, " ")))
	}
	yes("PrivateDevices", x.PrivateDevices)
	yes("ProtectKernelTunables", x.ProtectKernelTunables)
	yes("ProtectKernelModules", x.ProtectKernelModules)
	yes("ProtectKernelLogs", x.ProtectKernelLogs)
	yes("ProtectControlGroups", x.ProtectControlGroups)
	yes("ProtectClock", x.ProtectClock)
	yes("ProtectHostname", x.ProtectHostname)
	yes("PrivateMounts", x.PrivateMounts)
	b.add("Service", "ProtectProc", x.ProtectProc)
	yes("RestrictNamespaces", x.RestrictNamespaces)
	yes("RestrictRealtime", x.RestrictRealtime)
	yes("RestrictSUIDSGID", x.RestrictSUIDSGID)
	yes("LockPersonality", x.LockPersonality)
	yes("MemoryDenyWriteExecute", x.MemoryDenyWriteExecute)
	b.add("Service", "RestrictAddressFamilies", strings.Join(x.RestrictAddressFamilies, " "))
	b.add("Service", "SystemCallFilter", strings.Join(x.SystemCallFilter, " "))
	if len(x.SystemCallDeny) > 0 {
		b.add("Service", "SystemCallFilter", "~"+strings.Join(x.SystemCallDeny, " "))
	}
	b.add("Service", "SystemCallErrorNumber", x.SystemCallErrorNumber)
	b.add("Service", "SystemCallArchitectures", x.SystemCallArchitectures)
	b.add("Service", "UMask", x.UMask)
}

// Unit renders the service as name (".service" is appended when missing).
func (s Service) Unit(name string) Unit {
	if !strings.Contains(name, ".") {
		name += ".service"
	}
	var b builder
	b.add("Unit", "Description", s.Description)
	b.addAll("Unit", "Documentation", s.Documentation)
	b.addAll("Unit", "Wants", s.Wants)
	b.addAll("Unit", "Requires", s.Requires)
	b.addAll("Unit", "PartOf", s.PartOf)
	b.addAll("Unit", "After", s.After)
	b.addAll("Unit", "Before", s.Before)
	b.addAll("Unit", "ConditionPathExists", s.ConditionPathExists)
	if s.StartLimitIntervalSec != nil {
		b.add("Unit", "StartLimitIntervalSec", seconds(*s.StartLimitIntervalSec))
	}
	if s.StartLimitBurst > 0 {
		b.add("Unit", "StartLimitBurst", strconv.Itoa(s.StartLimitBurst))
	}

	b.add("Service", "Type", s.Type)
	b.add("Service", "NotifyAccess", s.NotifyAccess)
	b.addAll("Service", "EnvironmentFile", s.EnvironmentFiles)
	for _, k := range slices.Sorted(maps.Keys(s.Environment)) {
		b.add("Service", "Environment", k+"="+s.Environment[k])
	}
	b.addAll("Service", "ExecStartPre", s.ExecStartPre)
	b.add("Service", "ExecStart", s.ExecStart)
	b.addAll("Service", "ExecStartPost", s.ExecStartPost)
	b.add("Service", "ExecReload", s.ExecReload)
	b.addAll("Service", "ExecStopPost", s.ExecStopPost)
	b.add("Service", "Restart", s.Restart)
	if s.RestartSec > 0 {
		b.add("Service", "RestartSec", seconds(s.RestartSec))
	}
	if s.TimeoutStartSec > 0 {
		b.add("Service", "TimeoutStartSec", seconds(s.TimeoutStartSec))
	}
	if s.TimeoutStopSec > 0 {
		b.add("Service", "TimeoutStopSec", seconds(s.TimeoutStopSec))
	}
	if s.WatchdogSec > 0 {
		b.add("Service", "WatchdogSec", seconds(s.WatchdogSec))
	}
	b.add("Service", "KillMode", s.KillMode)
	if s.Delegate {
		b.add("Service", "Delegate", "yes")
	}
	if s.OOMScoreAdjust != 0 {
		b.add("Service", "OOMScoreAdjust", strconv.Itoa(s.OOMScoreAdjust))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Limits)) {
		b.add("Service", k, s.Limits[k])
	}
	if s.Accounting {
		for _, k := range []string{"CPUAccounting", "MemoryAccounting", "IOAccounting", "TasksAccounting"} {
			b.add("Service", k, "yes")
		}
	}
	b.add("Service", "Slice", s.Slice)
	if s.CPUWeight > 0 {
		b.add("Service", "CPUWeight", strconv.Itoa(s.CPUWeight))
	}
	if s.NoNewPrivileges {
		b.add("Service", "NoNewPrivileges", "yes")
	}
	b.add("Service", "ProtectSystem", s.ProtectSystem)
	if s.ProtectHome {
		b.add("Service", "ProtectHome", "yes")
	}
	if s.PrivateTmp {
		b.add("Service", "PrivateTmp", "yes")
	}
	b.addAll("Service", "ReadWritePaths", s.ReadWritePaths)
	s.Sandbox.render(&b)
	b.addAll("Install", "WantedBy", s.WantedBy)
	return Unit{Name: name, Options: b.opts}
}

// Target groups units: starting it starts everything it Wants.
type Target struct {
	Description string
	Wants       []string
	After       []string
	WantedBy    []string
}

// Unit renders the target as name (".target" is appended when missing).
func (t Target) Unit(name string) Unit {
	if !strings.HasSuffix(name, ".target") {
		name += ".target"
	}
	var b builder
	b.add("Unit", "Description", t.Description)
	b.addAll("Unit", "Wants", t.Wants)
	b.addAll("Unit", "After", t.After)
	b.addAll("Install", "WantedBy", t.WantedBy)
	return Unit{Name: name, Options: b.opts}
}

// Timer starts a service on a schedule. The service (Service, default the
// timer's own name) is usually Type=oneshot and not wanted by anything else.
type Timer struct {
	Description string
	PartOf      []string
	// ConditionPathExists skips the timer while a path is missing.
	ConditionPathExists []string
	// OnBootSec fires once that long after boot; OnUnitInactiveSec again
	// that long after the service last finished.
	OnBootSec, OnUnitInactiveSec time.Duration
	// AccuracySec is how late systemd may fire to coalesce wake-ups.
	AccuracySec time.Duration
	// RandomizedDelaySec spreads the machines of a fleet apart.
	RandomizedDelaySec time.Duration
	Service            string
	WantedBy           []string
}

// Unit renders the timer as name (".timer" is appended when missing).
func (t Timer) Unit(name string) Unit {
	if !strings.HasSuffix(name, ".timer") {
		name += ".timer"
	}
	var b builder
	b.add("Unit", "Description", t.Description)
	b.addAll("Unit", "PartOf", t.PartOf)
	b.addAll("Unit", "ConditionPathExists", t.ConditionPathExists)
	for _, s := range []struct {
		key string
		d   time.Duration
	}{{"OnBootSec", t.OnBootSec}, {"OnUnitInactiveSec", t.OnUnitInactiveSec}, {"AccuracySec", t.AccuracySec}, {"RandomizedDelaySec", t.RandomizedDelaySec}} {
		if s.d > 0 {
			b.add("Timer", s.key, seconds(s.d))
		}
	}
	b.add("Timer", "Unit", t.Service)
	b.addAll("Install", "WantedBy", t.WantedBy)
	return Unit{Name: name, Options: b.opts}
}

// Slice is a node of the cgroup tree that units are placed in (Slice= on a
// service); its weights divide contended CPU and IO with its siblings.
type Slice struct {
	Description string
	// CPUWeight and IOWeight: 1-10000, default 100 (system.slice's).
	CPUWeight, IOWeight int
}

// Unit renders the slice as name (".slice" is appended when missing).
func (s Slice) Unit(name string) Unit {
	if !strings.HasSuffix(name, ".slice") {
		name += ".slice"
	}
	var b builder
	b.add("Unit", "Description", s.Description)
	if s.CPUWeight > 0 {
		b.add("Slice", "CPUWeight", strconv.Itoa(s.CPUWeight))
	}
	if s.IOWeight > 0 {
		b.add("Slice", "IOWeight", strconv.Itoa(s.IOWeight))
	}
	return Unit{Name: name, Options: b.opts}
}

type builder struct{ opts []*unit.UnitOption }

func (b *builder) add(section, name, value string) {
	if value != "" {
		b.opts = append(b.opts, unit.NewUnitOption(section, name, value))
	}
}

func (b *builder) addAll(section, name string, values []string) {
	for _, v := range values {
		b.add(section, name, v)
	}
}

// seconds renders a duration the way systemd time spans are usually written.
func seconds(d time.Duration) string {
	if d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return strconv.FormatInt(d.Milliseconds(), 10) + "ms"
}
