package pki

import (
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// clock is the fixed time of every test.
var clock = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// testCluster has n masters master-0..master-<n-1> at 10.0.0.10+i.
func testCluster(n int) Cluster {
	c := Cluster{
		Name:               "demo",
		DNSDomain:          "cluster.local",
		APIServerServiceIP: net.ParseIP("10.96.0.1"),
		ExtraAPIServerSANs: []string{"api.demo.example.com", "127.0.0.1", "192.0.2.10"},
	}
	for i := range n {
		c.Masters = append(c.Masters, Machine{Name: fmt.Sprintf("master-%d", i), IP: net.IPv4(10, 0, 0, byte(10+i))})
	}
	return c
}

// seeded is a reproducible stand-in for crypto/rand.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	s[0] = byte(seed)
	s[1] = byte(seed >> 8)
	return mathrand.NewChaCha8(s)
}

func testOptions(seed uint64) Options {
	return Options{Now: func() time.Time { return clock }, Rand: seeded(seed)}
}

func mustGenerate(t *testing.T, c Cluster, o Options) *Bundle {
	t.Helper()
	b, err := Generate(c, o)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readTree returns every regular file under dir by relative path.
func readTree(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		files[rel] = data
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
