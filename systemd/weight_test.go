package systemd

import "testing"

func TestParseCPUWeight(t *testing.T) {
	for in, want := range map[string]CPUWeight{
		"etcd.service=1000":    {Unit: "etcd.service", Weight: 1000},
		"controlplane.slice=1": {Unit: "controlplane.slice", Weight: 1},
		"kubepods.slice=10000": {Unit: "kubepods.slice", Weight: 10000},
	} {
		got, err := ParseCPUWeight(in)
		if err != nil || got != want {
			t.Errorf("ParseCPUWeight(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if got.String() != in {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), in)
		}
	}
	for _, in := range []string{"", "etcd.service", "=100", "etcd=100", "etcd.service=0", "etcd.service=10001", "etcd.service=-1", "etcd.service=x", "etcd.service=1.5"} {
		if _, err := ParseCPUWeight(in); err == nil {
			t.Errorf("ParseCPUWeight(%q): no error", in)
		}
	}
}

func TestBootingState(t *testing.T) {
	for v, want := range map[string]bool{`"initializing"`: true, `"starting"`: true, `"running"`: false, `"degraded"`: false, `"stopping"`: false} {
		if got := bootingState(v); got != want {
			t.Errorf("bootingState(%s) = %v, want %v", v, got, want)
		}
	}
}
