package systemd

import (
	"strings"
	"testing"
	"time"
)

func TestServiceRendering(t *testing.T) {
	zero := time.Duration(0)
	u := Service{
		Description:           "demo",
		After:                 []string{"a.service", "b.service"},
		StartLimitIntervalSec: &zero,
		Type:                  "notify",
		Environment:           map[string]string{"B": "2", "A": "1"},
		ExecStart:             "/bin/demo $ARGS",
		Restart:               "always",
		RestartSec:            1500 * time.Millisecond,
		Accounting:            true,
		WantedBy:              []string{"multi-user.target"},
	}.Unit("demo")
	if u.Name != "demo.service" {
		t.Errorf("name %s", u.Name)
	}
	data, err := u.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := Header + `[Unit]
Description=demo
After=a.service
After=b.service
StartLimitIntervalSec=0s

[Service]
Type=notify
Environment=A=1
Environment=B=2
ExecStart=/bin/demo $ARGS
Restart=always
RestartSec=1500ms
CPUAccounting=yes
MemoryAccounting=yes
IOAccounting=yes
TasksAccounting=yes

[Install]
WantedBy=multi-user.target
`
	if string(data) != want {
		t.Errorf("got:\n%s\nwant:\n%s", data, want)
	}
	back, err := Parse(u.Name, data)
	if err != nil {
		t.Fatal(err)
	}
	if got := back.Values("Unit", "After"); strings.Join(got, ",") != "a.service,b.service" {
		t.Errorf("After round-trip: %v", got)
	}
	if back.Value("Service", "Restart") != "always" || back.Value("Service", "Nope") != "" {
		t.Error("Value lookups")
	}
}

func TestTarget(t *testing.T) {
	u := Target{Description: "x", Wants: []string{"a.service"}, WantedBy: []string{"multi-user.target"}}.Unit("kubeup-x")
	if u.Name != "kubeup-x.target" || u.Value("Unit", "Wants") != "a.service" {
		t.Errorf("%+v", u)
	}
}

func TestTimer(t *testing.T) {
	u := Timer{
		Description: "every ten minutes", PartOf: []string{"kubeup-master.target"},
		OnBootSec: 5 * time.Minute, OnUnitInactiveSec: 10 * time.Minute, AccuracySec: time.Minute,
		RandomizedDelaySec: 30 * time.Second, Service: "snap.service",
	}.Unit("snap")
	data, err := u.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := Header + `[Unit]
Description=every ten minutes
PartOf=kubeup-master.target

[Timer]
OnBootSec=300s
OnUnitInactiveSec=600s
AccuracySec=60s
RandomizedDelaySec=30s
Unit=snap.service
`
	if u.Name != "snap.timer" || string(data) != want {
		t.Errorf("%s:\n%s\nwant:\n%s", u.Name, data, want)
	}
}

func TestSlice(t *testing.T) {
	u := Slice{Description: "control plane", CPUWeight: 1000, IOWeight: 500}.Unit("kubeup-control-plane")
	data, err := u.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := Header + "[Unit]\nDescription=control plane\n\n[Slice]\nCPUWeight=1000\nIOWeight=500\n"
	if u.Name != "kubeup-control-plane.slice" || string(data) != want {
		t.Errorf("%s:\n%s\nwant:\n%s", u.Name, data, want)
	}
	svc := Service{ExecStart: "/bin/x", Slice: u.Name, CPUWeight: 200}.Unit("x")
	if svc.Value("Service", "Slice") != "kubeup-control-plane.slice" || svc.Value("Service", "CPUWeight") != "200" {
		t.Errorf("service placement: %+v", svc)
	}
}
