package metal

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// ServeTFTP serves the iPXE binaries (Options.IPXE, by name, read-only)
// over TFTP on conn until ctx ends, for firmware whose PXE must chain-load
// iPXE (DHCP's boot file: undionly.kpxe for BIOS, ipxe.efi or snponly.efi
// for UEFI). Nothing else is served and nothing can be written.
func (s *Server) ServeTFTP(ctx context.Context, conn net.PacketConn) error {
	srv := tftp.NewServer(func(name string, rf io.ReaderFrom) error {
		name = strings.TrimPrefix(name, "/")
		who := "?"
		var m *state
		if ot, ok := rf.(tftp.OutgoingTransfer); ok {
			addr := ot.RemoteAddr()
			who = addr.IP.String()
			if ip, ok := netip.AddrFromSlice(addr.IP); ok {
				if mac, err := s.o.Neighbor(ip.Unmap()); err == nil {
					if m = s.lookup(mac.String()); m != nil {
						who = m.Name
					}
				}
			}
		}
		path, ok := s.o.IPXE[name]
		if !ok {
			s.logf("%s asked TFTP for %q: not served (only %s)", who, name, strings.Join(s.ipxeNames(), ", "))
			return fmt.Errorf("not found: %s", name)
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		s.logf("%s fetches iPXE (%s) over TFTP", who, name)
		n, err := rf.ReadFrom(f)
		if m != nil {
			s.mu.Lock()
			m.sent += n
			s.mu.Unlock()
		}
		return err
	}, nil)
	srv.SetTimeout(5 * time.Second)
	go func() {
		<-ctx.Done()
		srv.Shutdown()
	}()
	return srv.Serve(conn)
}

func (s *Server) ipxeNames() []string {
	var out []string
	for n := range s.o.IPXE {
		out = append(out, n)
	}
	return out
}
