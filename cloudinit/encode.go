package cloudinit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
)

// ErrTooLarge is matched (errors.Is) by the error Encode returns when user-data is over a policy's limit.
var ErrTooLarge = errors.New("user-data too large")

// Policy is how user-data is prepared for one target.
type Policy struct {
	// CompressAbove gzips user-data larger than this many bytes; zero never compresses. cloud-init recognises the
	// gzip magic number and decompresses before parsing.
	CompressAbove int
	// Limit is the largest (possibly compressed) user-data the target accepts; zero means no limit.
	Limit int
	// Target names the target in errors, e.g. "aws".
	Target string
}

// PolicyAWS fits EC2's 16 KiB user-data limit (measured on the raw bytes, before EC2's base64 transport).
// User-data over 8 KiB is compressed (a node's is about 13 KiB plain, 5 KiB gzipped: room for keys and names);
// smaller configs stay readable in the console.
func PolicyAWS() Policy {
	return Policy{CompressAbove: 8192, Limit: 16384, Target: "aws"}
}

// PolicyGCP fits GCE's 256 KiB limit on one metadata value. It never compresses: metadata values are text, so
// gzip output would need base64 plus the user-data-encoding attribute, which this package does not set.
func PolicyGCP() Policy {
	return Policy{Limit: 262144, Target: "gcp"}
}

// PolicyNoCloud is for NoCloud seed ISOs: no limit and no compression, so the seed can be read with plain tools.
func PolicyNoCloud() Policy {
	return Policy{Target: "nocloud"}
}

// SizeError is the error for user-data over a limit; it matches ErrTooLarge.
type SizeError struct {
	Target     string
	Size       int
	Limit      int
	Compressed bool
}

func (e *SizeError) Error() string {
	what := "user-data"
	if e.Target != "" {
		what += " for " + e.Target
	}
	after := ""
	if e.Compressed {
		after = " after gzip"
	}
	return fmt.Sprintf("%s is %d bytes%s, over the %d-byte limit", what, e.Size, after, e.Limit)
}

func (e *SizeError) Unwrap() error { return ErrTooLarge }

// gzipMagic starts every gzip stream; cloud-init checks for it.
var gzipMagic = []byte{0x1f, 0x8b}

// Encode applies p to rendered user-data: it gzips data larger than p.CompressAbove (unless it already is gzip)
// and returns a *SizeError matching ErrTooLarge if the result is still over p.Limit. The gzip header carries no
// name and a zero modification time, so equal input gives equal output.
func Encode(userData []byte, p Policy) ([]byte, error) {
	out := userData
	compressed := bytes.HasPrefix(userData, gzipMagic)
	if p.CompressAbove > 0 && len(userData) > p.CompressAbove && !compressed {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return nil, fmt.Errorf("gzip user-data: %w", err)
		}
		// zw.Header is left zero: no Name, no Comment, ModTime zero (written as 0).
		if _, err := zw.Write(userData); err != nil {
			return nil, fmt.Errorf("gzip user-data: %w", err)
		}
		if err := zw.Close(); err != nil {
			return nil, fmt.Errorf("gzip user-data: %w", err)
		}
		out = buf.Bytes()
		compressed = true
	}
	if p.Limit > 0 && len(out) > p.Limit {
		return nil, &SizeError{Target: p.Target, Size: len(out), Limit: p.Limit, Compressed: compressed}
	}
	return out, nil
}
