package cloudinit

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// MetaData is the NoCloud meta-data file.
type MetaData struct {
	// InstanceID identifies the instance; cloud-init reruns its once-per-instance modules when it changes.
	InstanceID string
	// LocalHostname is the hostname cloud-init uses when user-data sets none.
	LocalHostname string
}

type metaDataWire struct {
	InstanceID    string `yaml:"instance-id"`
	LocalHostname string `yaml:"local-hostname,omitempty"`
}

// Render returns the meta-data document (YAML).
func (m MetaData) Render() ([]byte, error) {
	var errs []error
	if strings.TrimSpace(m.InstanceID) == "" {
		errs = append(errs, errors.New("instance-id: must not be empty"))
	}
	if strings.ContainsFunc(m.LocalHostname, unicode.IsSpace) {
		errs = append(errs, fmt.Errorf("local-hostname: %q contains whitespace", m.LocalHostname))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("render meta-data: %w", err)
	}
	out, err := marshalYAML(metaDataWire(m))
	if err != nil {
		return nil, fmt.Errorf("render meta-data: %w", err)
	}
	return out, nil
}
