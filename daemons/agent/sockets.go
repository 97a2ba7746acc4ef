package agent

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// Socket is a listening socket of the machine's network namespace: a TCP
// socket in LISTEN, or a UDP socket bound and not connected (one that
// receives from anyone).
type Socket struct {
	Proto   string         `json:"proto"` // tcp or udp
	Address netip.AddrPort `json:"address"`
}

func (s Socket) String() string { return s.Proto + " " + s.Address.String() }

// Socket states in /proc/net/{tcp,udp}[6] (the kernel's TCP states, which
// UDP sockets reuse: a bound, unconnected one is "close").
const (
	tcpListen = 0x0A
	udpClose  = 0x07
)

// ListeningSockets reads procNet's tcp, tcp6, udp and udp6 tables (the
// agent's own network namespace, the host's, under /proc/net): who listens,
// not who is connected. Sorted, without duplicates (SO_REUSEPORT groups
// show once).
func ListeningSockets(procNet string) ([]Socket, error) {
	var out []Socket
	for _, f := range []struct {
		file, proto string
		state       int64
	}{{"tcp", "tcp", tcpListen}, {"tcp6", "tcp", tcpListen}, {"udp", "udp", udpClose}, {"udp6", "udp", udpClose}} {
		data, err := os.ReadFile(filepath.Join(procNet, f.file))
		if os.IsNotExist(err) {
			continue // no IPv6 in this kernel
		}
		if err != nil {
			return nil, fmt.Errorf("listening sockets: %w", err)
		}
		socks, err := parseProcNet(f.proto, f.state, data)
		if err != nil {
			return nil, fmt.Errorf("listening sockets: %s: %w", f.file, err)
		}
		out = append(out, socks...)
	}
	slices.SortFunc(out, func(a, b Socket) int {
		return cmp.Or(strings.Compare(a.Proto, b.Proto), a.Address.Compare(b.Address))
	})
	return slices.Compact(out), nil
}

// parseProcNet takes the sockets in state from one /proc/net table:
//
//	sl  local_address rem_address   st ...
//	 0: 0100007F:0CEA 00000000:0000 0A ...
//
// Addresses are hexadecimal 32-bit words in the kernel's (native) byte
// order, ports big-endian hexadecimal. UDP sockets connected to a peer are
// left out.
func parseProcNet(proto string, state int64, data []byte) ([]Socket, error) {
	var out []Socket
	sc := bufio.NewScanner(bytes.NewReader(data))
	first := true
	for sc.Scan() {
		if first {
			first = false // the header
			continue
		}
		f := strings.Fields(sc.Text())
		if len(f) < 4 {
			continue
		}
		st, err := strconv.ParseInt(f[3], 16, 32)
		if err != nil {
			return nil, fmt.Errorf("state %q: %w", f[3], err)
		}
		if st != state {
			continue
		}
		local, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, err
		}
		remote, err := parseHexAddrPort(f[2])
		if err != nil {
			return nil, err
		}
		if proto == "udp" && remote.Port() != 0 {
			continue // connected: a client, not a listener
		}
		out = append(out, Socket{Proto: proto, Address: local})
	}
	return out, sc.Err()
}

func parseHexAddrPort(s string) (netip.AddrPort, error) {
	host, port, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	raw, err := hex.DecodeString(host)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("address %q", s)
	}
	p, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port %q", s)
	}
	// Each 32-bit word is in native order: turn it into network order.
	b := make([]byte, len(raw))
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	addr, _ := netip.AddrFromSlice(b)
	return netip.AddrPortFrom(addr.Unmap(), uint16(p)), nil
}

func (d *Daemon) serveSockets(w http.ResponseWriter, _ *http.Request) {
	socks, err := ListeningSockets(d.procNet())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if socks == nil {
		socks = []Socket{}
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(socks)
}

// defaultProcNet is where the kernel lists the namespace's sockets.
const defaultProcNet = "/proc/net"

func (d *Daemon) procNet() string {
	if d.procNetDir != "" {
		return d.procNetDir
	}
	return defaultProcNet
}
