package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const metalHead = head + "spec:\n  network: {machineCIDR: 192.168.10.0/24}\n  target:\n    provider: metal\n    metal:\n"

func TestMetalDefaults(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(metalHead + `      server: 192.168.10.2
      machines:
      - {name: cp1, role: master, mac: "52:54:00:AA:00:01", firmware: bios}
      - {name: w1, role: node, mac: "52:54:00:aa:00:02", disk: /dev/vdb, dhcp: true}
      - {name: w2, role: node, mac: "52:54:00:aa:00:03", address: 192.168.10.50}
`))
	if err != nil {
		t.Fatal(err)
	}
	mt := c.Spec.Target.Metal
	if got := mt.ServerAddr(); got != "192.168.10.2:8080" {
		t.Errorf("server %s, want the default port", got)
	}
	if mt.Gateway != "192.168.10.1" || !reflect.DeepEqual(mt.DNS, []string{"192.168.10.1"}) || mt.APIEndpoint != "192.168.10.10" {
		t.Errorf("gateway %s, dns %v, api endpoint %s", mt.Gateway, mt.DNS, mt.APIEndpoint)
	}
	var got []string
	for _, m := range c.Machines() {
		got = append(got, strings.Join([]string{m.Name, string(m.Role), m.IP.String(), m.MAC, m.Disk, m.Firmware, map[bool]string{true: "dhcp", false: "static"}[m.DHCP]}, " "))
	}
	want := []string{
		"cp1 master 192.168.10.10 52:54:00:aa:00:01  bios static",
		"w1 node 192.168.10.100 52:54:00:aa:00:02 /dev/vdb uefi dhcp",
		"w2 node 192.168.10.50 52:54:00:aa:00:03  uefi static",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("machines:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestMetalInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, doc string
		want      []string
	}{
		{"no metal section", head + "spec:\n  target: {provider: metal}\n",
			[]string{"spec.target.metal: is required when spec.target.provider is metal: list the machines (name, role, mac) and the boot server's address"}},
		{"no server, no machines", metalHead + "      bootstrapTokenTTL: 5m\n      machines: []\n",
			[]string{"spec.target.metal.server: is required: the address the machines reach this host's boot server at (for example 192.168.10.2:8080)",
				`spec.target.metal.bootstrapTokenTTL: "5m" is not a duration from 10m to 24h (the nodes' bootstrap token lasts this long after up)`,
				"spec.target.metal.machines: is empty: list each machine (name, role, mac)"}},
		{"every machine problem", metalHead + `      server: "boot.lan:80"
      gateway: 10.0.0.1
      apiEndpoint: 192.168.10.99
      machines:
      - {name: cp1, role: master, mac: "52:54:00:aa:00:01"}
      - {name: cp1, role: worker, mac: "52-54-00-AA-00-01", address: 192.168.10.10}
      - {name: n2, role: node, mac: "01:00:5e:00:00:01", address: 10.1.0.5, disk: sda, firmware: coreboot}
      - {name: n3, role: node, mac: "5254.00aa.0003", address: 192.168.10.255}
      - {name: n4, role: node, mac: "nope", address: 192.168.10.300}
`, []string{
			`spec.target.metal.server: "boot.lan:80" is not an IPv4 address with an optional port (for example 192.168.10.2:8080)`,
			"spec.target.metal.gateway: 10.0.0.1 is outside spec.network.machineCIDR 192.168.10.0/24",
			`spec.target.metal.machines[1].name: "cp1" repeats spec.target.metal.machines[0]`,
			`spec.target.metal.machines[1].role: "worker" is not one of master, node`,
			"spec.target.metal.machines[1].mac: 52:54:00:aa:00:01 repeats spec.target.metal.machines[0]: each machine boots from its own interface",
			"spec.target.metal.machines[1].address: 192.168.10.10 repeats spec.target.metal.machines[0]",
			"spec.target.metal.machines[2].mac: 01:00:5e:00:00:01 is a multicast or all-zero address, not a network interface's",
			`spec.target.metal.machines[2].disk: "sda" is not a device path (for example /dev/sda or /dev/disk/by-id/...); leave it out for the first disk that is not removable`,
			"spec.target.metal.machines[2].address: 10.1.0.5 is outside spec.network.machineCIDR 192.168.10.0/24",
			`spec.target.metal.machines[2].firmware: "coreboot" is not a firmware; use uefi or bios`,
			"spec.target.metal.machines[3].address: 192.168.10.255 is the network's own or broadcast address",
			`spec.target.metal.machines[4].mac: "nope" is not a MAC address; write six hexadecimal pairs separated by colons (52:54:00:12:34:56)`,
			`spec.target.metal.machines[4].address: "192.168.10.300" is not an IPv4 address`,
			`spec.target.metal.apiEndpoint: "192.168.10.99" is not a master's address (192.168.10.10); a virtual address needs HA, which the metal target does not have yet`,
		}},
		{"no master, server is a machine", metalHead + `      server: 192.168.10.100:9000
      machines:
      - {name: w1, role: node, mac: "52:54:00:aa:00:02"}
`, []string{
			"spec.target.metal.machines[0].address: 192.168.10.100 is the boot server's address",
			"spec.target.metal.machines: no machine has role master; a cluster needs 1, 3 or 5",
		}},
		{"pools disagree", head + "spec:\n  masters: {names: [a]}\n  network: {machineCIDR: 192.168.10.0/24}\n  target:\n    provider: metal\n    metal:\n" + `      server: 192.168.10.2
      machines:
      - {name: cp1, role: master, mac: "52:54:00:aa:00:01"}
`, []string{
			"spec.masters: names [a] but spec.target.metal.machines has [cp1] with role master; leave spec.masters out on the metal target",
		}},
		{"metal section on local", head + "spec:\n  target:\n    metal: {server: 10.0.0.1}\n",
			[]string{`spec.target.metal: is set but spec.target.provider is "local"`}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc))
			var list ErrorList
			if !errors.As(err, &list) {
				t.Fatalf("error %v is not an ErrorList", err)
			}
			var got []string
			for _, e := range list {
				got = append(got, e.Error())
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(tc.want, "\n  "))
			}
		})
	}
}
