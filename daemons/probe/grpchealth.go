package probe

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// grpcHealth calls grpc.health.v1.Health/Check (service "") on a unix
// socket and returns nil when the server answers SERVING. A server without
// the health service (UNIMPLEMENTED) still proves the socket accepts gRPC
// calls, which is all a unit's readiness needs.
//
// It speaks gRPC's wire format with net/http's HTTP/2 client and protowire
// rather than pulling in grpc-go: one unary call does not justify a
// dependency that size in a binary that runs on every machine.
func grpcHealth(ctx context.Context, socket string) error {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	tr := &http.Transport{
		Protocols: &protocols,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	defer tr.CloseIdleConnections()

	// An empty HealthCheckRequest (service "" = the whole server) is an
	// uncompressed, zero-length message: five zero bytes of framing.
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://localhost/grpc.health.v1.Health/Check",
		bytes.NewReader(make([]byte, 5)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("Te", "trailers")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return unwrapURLError(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("grpc health: %w", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/grpc") {
		return fmt.Errorf("grpc health: not a gRPC answer: HTTP %s, content-type %q", resp.Status, resp.Header.Get("Content-Type"))
	}
	// grpc-status is a trailer, or a header in a "trailers-only" answer.
	status := resp.Trailer.Get("Grpc-Status")
	if status == "" {
		status = resp.Header.Get("Grpc-Status")
	}
	switch status {
	case "0":
	case "12": // UNIMPLEMENTED: gRPC works, the health service is just absent.
		return nil
	default:
		msg := resp.Trailer.Get("Grpc-Message")
		if msg == "" {
			msg = resp.Header.Get("Grpc-Message")
		}
		return fmt.Errorf("grpc health: grpc-status %q: %s", status, msg)
	}
	serving, err := parseHealthResponse(body)
	if err != nil {
		return fmt.Errorf("grpc health: %w", err)
	}
	if serving != 1 {
		return fmt.Errorf("grpc health: status %s", healthStatusName(serving))
	}
	return nil
}

// parseHealthResponse unframes one gRPC message and returns field 1
// (HealthCheckResponse.status) of it.
func parseHealthResponse(frame []byte) (uint64, error) {
	if len(frame) < 5 {
		return 0, fmt.Errorf("short response (%d bytes)", len(frame))
	}
	if frame[0] != 0 {
		return 0, fmt.Errorf("compressed response")
	}
	n := binary.BigEndian.Uint32(frame[1:5])
	msg := frame[5:]
	if uint32(len(msg)) != n {
		return 0, fmt.Errorf("response length %d, framing says %d", len(msg), n)
	}
	var status uint64
	for len(msg) > 0 {
		num, typ, l := protowire.ConsumeTag(msg)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		msg = msg[l:]
		if num == 1 && typ == protowire.VarintType {
			v, l := protowire.ConsumeVarint(msg)
			if l < 0 {
				return 0, protowire.ParseError(l)
			}
			status, msg = v, msg[l:]
			continue
		}
		l = protowire.ConsumeFieldValue(num, typ, msg)
		if l < 0 {
			return 0, protowire.ParseError(l)
		}
		msg = msg[l:]
	}
	return status, nil
}

func healthStatusName(s uint64) string {
	switch s {
	case 0:
		return "UNKNOWN"
	case 1:
		return "SERVING"
	case 2:
		return "NOT_SERVING"
	case 3:
		return "SERVICE_UNKNOWN"
	}
	return fmt.Sprint(s)
}
