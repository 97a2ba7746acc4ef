package agent

import (
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

type fakeIPTables struct {
	chains map[string][][]string
	calls  []string
}

func (f *fakeIPTables) key(table, chain string) string { return table + "/" + chain }
func (f *fakeIPTables) ChainExists(table, chain string) (bool, error) {
	_, ok := f.chains[f.key(table, chain)]
	return ok, nil
}
func (f *fakeIPTables) NewChain(table, chain string) error {
	f.calls = append(f.calls, "new "+chain)
	f.chains[f.key(table, chain)] = nil
	return nil
}
func (f *fakeIPTables) ClearChain(table, chain string) error {
	f.calls = append(f.calls, "clear "+chain)
	f.chains[f.key(table, chain)] = nil
	return nil
}
func (f *fakeIPTables) List(table, chain string) ([]string, error) {
	out := []string{"-N " + chain}
	for _, r := range f.chains[f.key(table, chain)] {
		out = append(out, "-A "+chain+" "+strings.Join(r, " "))
	}
	return out, nil
}
func (f *fakeIPTables) Exists(table, chain string, rule ...string) (bool, error) {
	return slices.ContainsFunc(f.chains[f.key(table, chain)], func(r []string) bool { return slices.Equal(r, rule) }), nil
}
func (f *fakeIPTables) Append(table, chain string, rule ...string) error {
	f.calls = append(f.calls, "append "+chain+" "+strings.Join(rule, " "))
	f.chains[f.key(table, chain)] = append(f.chains[f.key(table, chain)], rule)
	return nil
}
func (f *fakeIPTables) AppendUnique(table, chain string, rule ...string) error {
	if ok, _ := f.Exists(table, chain, rule...); ok {
		return nil
	}
	return f.Append(table, chain, rule...)
}

func TestEnsureMasqueradeIdempotent(t *testing.T) {
	ipt := &fakeIPTables{chains: map[string][][]string{"nat/POSTROUTING": {{"-j", "KUBE-POSTROUTING"}}}}
	cidr := netip.MustParsePrefix("10.244.0.0/16")
	for range 2 {
		if err := ensureMasquerade(ipt, cidr); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{
		"new KUBEUP-MASQ",
		"clear KUBEUP-MASQ",
		"append KUBEUP-MASQ -s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE",
		"append POSTROUTING -m comment --comment kubeup pod masquerade -j KUBEUP-MASQ",
	}
	if !reflect.DeepEqual(ipt.calls, want) {
		t.Errorf("calls\n%q\nwant\n%q", ipt.calls, want)
	}
	// A stale extra rule (an old cluster CIDR) is flushed.
	ipt.chains["nat/KUBEUP-MASQ"] = append(ipt.chains["nat/KUBEUP-MASQ"], masqueradeRule(netip.MustParsePrefix("10.99.0.0/16")))
	ipt.calls = nil
	if err := ensureMasquerade(ipt, cidr); err != nil {
		t.Fatal(err)
	}
	if len(ipt.chains["nat/KUBEUP-MASQ"]) != 1 || ipt.calls[0] != "clear KUBEUP-MASQ" {
		t.Errorf("chain %v after calls %q", ipt.chains["nat/KUBEUP-MASQ"], ipt.calls)
	}
}
