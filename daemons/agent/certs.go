package agent

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// certScanInterval: certificates change on rotation, hours apart at the
// least; a minute is fresh enough and cheap.
const (
	certScanInterval = time.Minute
	maxPEMFileSize   = 1 << 20
)

// CertificateInfo is one certificate found on disk.
type CertificateInfo struct {
	Path     string    `json:"path"`
	Subject  string    `json:"subject"`
	NotAfter time.Time `json:"notAfter"`
}

// certScanner is the task that finds every PEM certificate under the
// configured directories, for kubeup_certificate_expiry_seconds.
type certScanner struct {
	dirs []string

	mu     sync.Mutex
	certs  []CertificateInfo
	errors int
}

func (s *certScanner) Name() string { return "certificate-scan" }

func (s *certScanner) Run(ctx context.Context) error {
	for {
		certs, errs := scanCertificates(s.dirs)
		s.mu.Lock()
		s.certs, s.errors = certs, errs
		s.mu.Unlock()
		if sleepCtx(ctx, certScanInterval) != nil {
			return nil
		}
	}
}

// snapshot returns the last scan's certificates and unreadable-file count.
func (s *certScanner) snapshot() ([]CertificateInfo, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.certs, s.errors
}

// scanCertificates walks dirs (missing ones are skipped: the kubelet's PKI
// dir appears only after it first runs) and returns every certificate of
// every PEM file, and how many files could not be read or parsed.
//
// Rotating stores (the kubelet's <name>-current.pem symlink to a dated
// <name>-<date>.pem) keep old files around: those are reported once, under
// the symlink's path, and superseded dated files not at all, so an expired
// leftover does not page anyone.
func scanCertificates(dirs []string) ([]CertificateInfo, int) {
	var out []CertificateInfo
	errs := 0
	seen := map[[2]string]bool{}
	for _, dir := range dirs {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				if !errors.Is(err, fs.ErrNotExist) {
					errs++
				}
				return nil
			}
			if d.IsDir() {
				return nil
			}
			if isSupersededRotation(path, d) {
				return nil
			}
			certs, ok := readPEMCertificates(path)
			if !ok {
				errs++
			}
			for _, c := range certs {
				info := CertificateInfo{Path: path, Subject: c.Subject.String(), NotAfter: c.NotAfter.UTC()}
				key := [2]string{info.Path, info.Subject}
				if seen[key] { // one label set per path and subject
					continue
				}
				seen[key] = true
				out = append(out, info)
			}
			return nil
		})
	}
	slices.SortFunc(out, func(a, b CertificateInfo) int {
		return strings.Compare(a.Path+"\x00"+a.Subject, b.Path+"\x00"+b.Subject)
	})
	return out, errs
}

// isSupersededRotation: a regular <prefix>-<anything>.pem next to a
// <prefix>-current.pem symlink belongs to a rotating store.
func isSupersededRotation(path string, d fs.DirEntry) bool {
	if !d.Type().IsRegular() || !strings.HasSuffix(path, ".pem") {
		return false
	}
	dir, base := filepath.Split(path)
	for i := strings.LastIndexByte(base, '-'); i > 0; i = strings.LastIndexByte(base[:i], '-') {
		link := filepath.Join(dir, base[:i]+"-current.pem")
		if fi, err := os.Lstat(link); err == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return true
		}
	}
	return false
}

// readPEMCertificates returns the certificates of a file; ok is false when
// the file is unreadable or holds a CERTIFICATE block that does not parse.
// Files without certificates (keys, kubeconfigs, CSRs) are fine and empty.
func readPEMCertificates(path string) ([]*x509.Certificate, bool) {
	fi, err := os.Stat(path) // follows symlinks
	if err != nil {
		return nil, false
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxPEMFileSize {
		return nil, true
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, false
	}
	if !bytes.Contains(data, []byte("-----BEGIN CERTIFICATE-----")) {
		return nil, true
	}
	var out []*x509.Certificate
	ok := true
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, ok
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			ok = false
			continue
		}
		out = append(out, c)
	}
}
