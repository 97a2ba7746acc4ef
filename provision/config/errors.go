package config

import (
	"fmt"
	"strings"
)

// FieldError is one problem in a config, located by its field path
// (for example spec.network.podCIDR or spec.masters.names[2]).
type FieldError struct {
	Field  string
	Detail string
}

func (e FieldError) Error() string {
	if e.Field == "" {
		return e.Detail
	}
	return e.Field + ": " + e.Detail
}

// ErrorList is every problem found in a config, in field order.
type ErrorList []FieldError

func (l ErrorList) Error() string {
	lines := make([]string, len(l))
	for i, e := range l {
		lines[i] = e.Error()
	}
	if len(l) == 1 {
		return "invalid cluster config: " + lines[0]
	}
	return fmt.Sprintf("invalid cluster config (%d problems):\n  %s", len(l), strings.Join(lines, "\n  "))
}

// errs collects field errors while validating.
type errs struct{ list ErrorList }

func (e *errs) add(field, format string, args ...any) {
	e.list = append(e.list, FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
}
