// Package metal is the metal target's end-to-end test (make e2e-metal):
// blank QEMU machines on a bridge inside a network namespace the test
// makes, dnsmasq as the network's own DHCP server with the settings the
// README documents, and kubeup up serving their network boot.
package metal
