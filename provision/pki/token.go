package pki

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// BootstrapToken is a kubeadm-format bootstrap token, "<id>.<secret>" with a
// 6-character ID and a 16-character secret of [a-z0-9]. The apiserver finds
// it in a Secret "bootstrap-token-<id>" in kube-system.
type BootstrapToken string

var bootstrapTokenRE = regexp.MustCompile(`^[a-z0-9]{6}\.[a-z0-9]{16}$`)

// ParseBootstrapToken checks the format of s.
func ParseBootstrapToken(s string) (BootstrapToken, error) {
	if !bootstrapTokenRE.MatchString(s) {
		return "", fmt.Errorf("bootstrap token is not of the form [a-z0-9]{6}.[a-z0-9]{16}")
	}
	return BootstrapToken(s), nil
}

// ID is the public part of the token.
func (t BootstrapToken) ID() string { id, _, _ := strings.Cut(string(t), "."); return id }

// Secret is the secret part of the token.
func (t BootstrapToken) Secret() string { _, s, _ := strings.Cut(string(t), "."); return s }

func (t BootstrapToken) String() string { return string(t) }

const tokenAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newBootstrapToken draws 22 characters from r by rejection sampling, so
// every character is uniform over the alphabet.
func newBootstrapToken(r io.Reader) (BootstrapToken, error) {
	const n = 6 + 16
	limit := byte(256 - 256%len(tokenAlphabet)) // 252: a multiple of 36
	out := make([]byte, 0, n)
	buf := make([]byte, 32)
	for len(out) < n {
		if _, err := io.ReadFull(r, buf); err != nil {
			return "", fmt.Errorf("read token bytes: %w", err)
		}
		for _, c := range buf {
			if c < limit && len(out) < n {
				out = append(out, tokenAlphabet[int(c)%len(tokenAlphabet)])
			}
		}
	}
	return BootstrapToken(string(out[:6]) + "." + string(out[6:])), nil
}
