package agent

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func r(dst, via string) Route {
	return Route{Dst: netip.MustParsePrefix(dst), Via: netip.MustParseAddr(via)}
}

func TestPlanRoutes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                     string
		desired, current         []Route
		wantReplace, wantRemoved []Route
	}{
		{name: "nothing"},
		{name: "new nodes",
			desired:     []Route{r("10.244.2.0/24", "10.77.0.101"), r("10.244.0.0/24", "10.77.0.10")},
			wantReplace: []Route{r("10.244.0.0/24", "10.77.0.10"), r("10.244.2.0/24", "10.77.0.101")}},
		{name: "in sync",
			desired: []Route{r("10.244.0.0/24", "10.77.0.10")},
			current: []Route{r("10.244.0.0/24", "10.77.0.10")}},
		{name: "node moved",
			desired:     []Route{r("10.244.0.0/24", "10.77.0.11")},
			current:     []Route{r("10.244.0.0/24", "10.77.0.10")},
			wantReplace: []Route{r("10.244.0.0/24", "10.77.0.11")}},
		{name: "node gone",
			desired:     []Route{r("10.244.0.0/24", "10.77.0.10")},
			current:     []Route{r("10.244.0.0/24", "10.77.0.10"), r("10.244.3.0/24", "10.77.0.102")},
			wantRemoved: []Route{r("10.244.3.0/24", "10.77.0.102")}},
		{name: "all gone",
			current:     []Route{r("10.244.3.0/24", "10.77.0.102"), r("10.244.1.0/24", "10.77.0.100")},
			wantRemoved: []Route{r("10.244.1.0/24", "10.77.0.100"), r("10.244.3.0/24", "10.77.0.102")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, rem := PlanRoutes(tc.desired, tc.current)
			if !reflect.DeepEqual(rep, tc.wantReplace) || !reflect.DeepEqual(rem, tc.wantRemoved) {
				t.Errorf("replace %v remove %v\nwant    %v remove %v", rep, rem, tc.wantReplace, tc.wantRemoved)
			}
		})
	}
}

func TestApplyRoutesKeepsGoing(t *testing.T) {
	table := newFakeRoutes(r("10.244.9.0/24", "10.77.0.109"))
	table.failVia = netip.MustParseAddr("10.99.0.1")
	desired := []Route{r("10.244.0.0/24", "10.77.0.10"), r("10.244.5.0/24", "10.99.0.1"), r("10.244.2.0/24", "10.77.0.101")}
	got, changes, err := ApplyRoutes(table, desired)
	if err == nil || !strings.Contains(err.Error(), "10.244.5.0/24 via 10.99.0.1") {
		t.Errorf("error %v", err)
	}
	want := []Route{r("10.244.0.0/24", "10.77.0.10"), r("10.244.2.0/24", "10.77.0.101")}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("programmed %v, want %v", got, want)
	}
	if len(changes.Replaced) != 2 || len(changes.Removed) != 1 {
		t.Errorf("changes %+v", changes)
	}
	if now, _ := table.List(); !reflect.DeepEqual(now, want) {
		t.Errorf("table %v", now)
	}
}
