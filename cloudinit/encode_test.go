package cloudinit

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestEncodeBelowThreshold(t *testing.T) {
	in := []byte("#cloud-config\nhostname: x\n")
	for _, p := range []Policy{PolicyAWS(), PolicyGCP(), PolicyNoCloud(), {}} {
		out, err := Encode(in, p)
		if err != nil {
			t.Fatalf("%s: %v", p.Target, err)
		}
		if !bytes.Equal(out, in) {
			t.Errorf("%s: small user-data changed", p.Target)
		}
	}
}

func TestEncodeCompresses(t *testing.T) {
	// Compressible text just over the AWS threshold: it must be gzipped, fit, and decompress to the input.
	in := []byte(Header + strings.Repeat("# padding line to make the document large\n", 500))
	if len(in) <= PolicyAWS().CompressAbove {
		t.Fatalf("test input too small: %d", len(in))
	}
	out, err := Encode(in, PolicyAWS())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(out, []byte{0x1f, 0x8b}) {
		t.Fatal("output is not gzip")
	}
	// Fixed header: no name, no comment, MTIME zero.
	if out[3] != 0 || !bytes.Equal(out[4:8], []byte{0, 0, 0, 0}) {
		t.Errorf("gzip header has flags %#x mtime % x, want none and zero", out[3], out[4:8])
	}
	zr, err := gzip.NewReader(bytes.NewReader(out))
	if err != nil {
		t.Fatal(err)
	}
	back, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, in) {
		t.Error("gzip does not round-trip")
	}
	again, err := Encode(in, PolicyAWS())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again, out) {
		t.Error("Encode is not deterministic")
	}
	// Already-gzipped input is not compressed twice.
	twice, err := Encode(out, Policy{CompressAbove: 1})
	if err != nil || !bytes.Equal(twice, out) {
		t.Errorf("gzip input was changed (err %v)", err)
	}
}

func TestEncodeTooLarge(t *testing.T) {
	// Random bytes do not compress: 17000 of them are still over 16384 after gzip. The exact size is what Go's
	// compress/flate produces today; a future Go release could change it by a few bytes.
	rng := rand.New(rand.NewPCG(1, 2))
	in := make([]byte, 17000)
	for i := range in {
		in[i] = byte(rng.UintN(256))
	}
	_, err := Encode(in, PolicyAWS())
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("got %v, want ErrTooLarge", err)
	}
	const want = "user-data for aws is 17033 bytes after gzip, over the 16384-byte limit"
	if err.Error() != want {
		t.Errorf("got %q, want %q", err, want)
	}
	var se *SizeError
	if !errors.As(err, &se) || se.Target != "aws" || se.Limit != 16384 || se.Size != 17033 || !se.Compressed {
		t.Errorf("SizeError fields: %+v", se)
	}

	// Without compression the message says so.
	_, err = Encode(make([]byte, 300000), PolicyGCP())
	if !errors.Is(err, ErrTooLarge) || err.Error() != "user-data for gcp is 300000 bytes, over the 262144-byte limit" {
		t.Errorf("gcp: got %v", err)
	}
	if _, err := Encode(make([]byte, 1<<20), PolicyNoCloud()); err != nil {
		t.Errorf("nocloud has no limit: %v", err)
	}
}
