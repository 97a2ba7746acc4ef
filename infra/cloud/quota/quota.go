// Package quota checks, before `kubeup up` creates anything on a cloud,
// that the account's vCPU quotas can hold the cluster's machines. It fails
// naming the quota, its limit, its usage and what to do when they cannot,
// and fails too when the quotas cannot be read (ErrUnknown), so that a
// shortfall never stops a Pulumi update halfway.
package quota

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"kubeup.dev/kubeup/infra/cloud"
)

// SkipFlag is the `kubeup up` flag that skips the check.
const SkipFlag = "--skip-quota-check"

// ErrUnknown is wrapped by Check's error when a quota or its usage could
// not be read.
var ErrUnknown = errors.New("quotas unknown")

// Checker checks that a cloud account can hold a cluster's machines.
type Checker interface {
	// Check returns nil when every quota the cluster's machines count
	// against has room for them (the cluster's own running machines, from
	// an earlier `kubeup up`, are not counted twice).
	Check(ctx context.Context, c cloud.Cluster) error
}

// Need is the vCPUs a cluster's machines need of one quota.
type Need struct {
	// Family is the machine family ("e2", "n2") or, on AWS, "standard".
	Family string
	// Metric names the quota: the GCP regional metric ("CPUS", "N2_CPUS")
	// or the AWS quota code.
	Metric string
	VCPUs  int
}

// AWS's quota of every type in the catalogue: "Running On-Demand Standard
// (A, C, D, H, I, M, R, T, Z) instances".
const (
	awsQuotaCode  = "L-1216C47A"
	awsQuotaShort = "Running On-Demand Standard instances"
	awsFamily     = "standard"
)

// gcpMetrics are the regional quota metrics of the catalogue's families.
// This is our reading of Compute Engine's CPU-quota docs, which could not
// be re-read when this was written: E2 (and N1) vCPUs count against
// "CPUS"; other series count only against their own metric, not also
// against "CPUS". CPUS_ALL_REGIONS (project-wide) is not checked.
var gcpMetrics = map[string]string{
	"e2":  "CPUS",
	"n2":  "N2_CPUS",
	"n2d": "N2D_CPUS",
	"c3":  "C3_CPUS",
	"t2d": "T2D_CPUS",
}

// Needs sums the vCPUs of c's machines (from the catalogue) per quota, in
// the order the machines first name each quota. A type outside the
// catalogue, or one whose quota is not known here, is an error.
func Needs(c cloud.Cluster) ([]Need, error) {
	var out []Need
	for _, m := range c.Machines {
		t, err := cloud.LookupType(c.Provider, m.Type)
		if err != nil {
			return nil, fmt.Errorf("machine %s: %w", m.Name, err)
		}
		family, metric, err := quotaOf(c.Provider, t.Name)
		if err != nil {
			return nil, fmt.Errorf("machine %s: %w", m.Name, err)
		}
		i := 0
		for i < len(out) && out[i].Metric != metric {
			i++
		}
		if i == len(out) {
			out = append(out, Need{Family: family, Metric: metric})
		}
		out[i].VCPUs += t.VCPUs
	}
	return out, nil
}

// quotaOf is the family and quota of a machine type.
func quotaOf(provider, typ string) (family, metric string, err error) {
	switch provider {
	case cloud.AWS:
		if awsStandard(typ) {
			return awsFamily, awsQuotaCode, nil
		}
	case cloud.GCP:
		family, _, _ = strings.Cut(typ, "-")
		if m, ok := gcpMetrics[family]; ok {
			return family, m, nil
		}
	default:
		return "", "", fmt.Errorf("unknown provider %q", provider)
	}
	return "", "", fmt.Errorf("no known vCPU quota for %s machine type %q", provider, typ)
}

// awsStandardPrefixes are the letters before the generation digit of the
// types that count against L-1216C47A. inf, trn, dl, hpc, mac, u, x, g,
// p, f and vt have quotas of their own.
var awsStandardPrefixes = map[string]bool{
	"a": true, "c": true, "d": true, "h": true, "i": true, "im": true, "is": true,
	"m": true, "r": true, "t": true, "z": true,
}

// awsStandard tells whether an EC2 instance type counts against the
// Running On-Demand Standard instances quota.
func awsStandard(typ string) bool {
	n := 0
	for n < len(typ) && typ[n] >= 'a' && typ[n] <= 'z' {
		n++
	}
	return n < len(typ) && typ[n] >= '0' && typ[n] <= '9' && awsStandardPrefixes[typ[:n]]
}

// unknownHint ends an ErrUnknown error.
func unknownHint(permissions string) string {
	return fmt.Sprintf("the check needs %s (or skip it with %s)", permissions, SkipFlag)
}

// inUse is "2 are in use", with "by other machines (not counting the
// cluster's own N)" when the cluster already runs some.
func inUse(others, own int) string {
	verb := "are"
	if others == 1 {
		verb = "is"
	}
	s := fmt.Sprintf("%d %s in use", others, verb)
	if own > 0 {
		s += fmt.Sprintf(" by other machines (not counting the cluster's own %d)", own)
	}
	return s
}
