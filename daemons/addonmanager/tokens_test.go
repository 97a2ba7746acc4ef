package addonmanager

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"kubeup.dev/kubeup/components"
)

// A bootstrap token past its expiration is no longer declared; one before
// it, one without any and everything else are.
func TestWithoutExpiredTokens(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	load := func(expires time.Time) []Addon {
		t.Helper()
		data, err := components.BootstrapManifests("abcdef.0123456789abcdef", expires)
		if err != nil {
			t.Fatal(err)
		}
		addons, errs := loadData("rendered:bootstrap.yaml", data)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		return addons
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	all := load(time.Time{})
	hasToken := func(addons []Addon) bool {
		for _, a := range addons {
			if a.Object.GetKind() == "Secret" && a.Object.GetName() == "bootstrap-token-abcdef" {
				return true
			}
		}
		return false
	}
	for name, tc := range map[string]struct {
		expires time.Time
		kept    bool
	}{
		"no expiration": {time.Time{}, true},
		"still valid":   {now.Add(time.Minute), true},
		"expired":       {now.Add(-time.Second), false},
	} {
		got := withoutExpiredTokens(load(tc.expires), now, log)
		if hasToken(got) != tc.kept {
			t.Errorf("%s: token kept %v, want %v", name, hasToken(got), tc.kept)
		}
		want := len(all)
		if !tc.kept {
			want--
		}
		if len(got) != want {
			t.Errorf("%s: %d objects declared, want %d", name, len(got), want)
		}
	}
}
