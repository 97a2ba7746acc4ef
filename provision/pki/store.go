package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Files in the state directory, besides one .crt/.key pair per row (see
// storePaths).
const (
	clusterFile        = "cluster.json"
	encryptionKeyFile  = "encryption-key"
	bootstrapTokenFile = "bootstrap-token"
	mastersDir         = "masters"
)

// storePaths are the state-directory paths (relative to it) of row s:
// <name>.crt/.key for shared rows, masters/<machine>/<name>.crt/.key for
// per-master rows, and service-account.pub/.key for the key pair.
func storePaths(s Spec) (cert, key string) {
	ext := ".crt"
	if s.Kind == KindKeyPair {
		ext = ".pub"
	}
	base := s.Name
	if s.Machine != "" {
		base = filepath.Join(mastersDir, s.Machine, s.Name)
	}
	return base + ext, base + ".key"
}

// Save writes b to dir (created 0700): every file is written to a temporary
// name and renamed into place, keys and secrets 0600, certificates 0644.
// CAs and other roots are written first and cluster.json last, so an
// interrupted Save leaves a directory LoadOrGenerate can resume from.
// Certificate and key files of rows no longer in the table (a removed master)
// are deleted.
func (b *Bundle) Save(dir string) error {
	if err := b.save(dir); err != nil {
		return fmt.Errorf("save pki to %s: %w", dir, err)
	}
	return nil
}

func (b *Bundle) save(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return err
	}
	want := map[string]bool{}
	write := func(rel string, mode os.FileMode, data []byte) error {
		want[rel] = true
		path := filepath.Join(dir, rel)
		// Leave files that are already right alone (and their mtimes).
		if info, err := os.Lstat(path); err == nil && info.Mode() == mode {
			if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
				return nil
			}
		}
		return writeFileAtomic(path, mode, data)
	}
	writeRows := func(leaves bool) error {
		for _, s := range b.Specs {
			if (s.Kind == KindCert) != leaves {
				continue
			}
			c := b.creds[s.ID()]
			if c == nil {
				return fmt.Errorf("%s: missing from the bundle", s.ID())
			}
			certRel, keyRel := storePaths(s)
			if err := write(keyRel, 0o600, c.keyPEM); err != nil {
				return err
			}
			if err := write(certRel, 0o644, c.certPEM); err != nil {
				return err
			}
		}
		return nil
	}
	if len(b.EncryptionKey) != EncryptionKeySize {
		return fmt.Errorf("encryption key is %d bytes, want %d", len(b.EncryptionKey), EncryptionKeySize)
	}
	if _, err := ParseBootstrapToken(string(b.BootstrapToken)); err != nil {
		return err
	}
	if err := writeRows(false); err != nil {
		return err
	}
	if err := write(encryptionKeyFile, 0o600, []byte(base64.StdEncoding.EncodeToString(b.EncryptionKey)+"\n")); err != nil {
		return err
	}
	if err := write(bootstrapTokenFile, 0o600, []byte(string(b.BootstrapToken)+"\n")); err != nil {
		return err
	}
	if err := writeRows(true); err != nil {
		return err
	}
	cluster, err := json.MarshalIndent(b.Cluster, "", "  ")
	if err != nil {
		return fmt.Errorf("encode cluster: %w", err)
	}
	if err := write(clusterFile, 0o644, append(cluster, '\n')); err != nil {
		return err
	}
	return prune(dir, want)
}

// prune deletes the .crt, .pub and .key files in dir and dir/masters/* that
// Save did not write, and then empty master directories.
func prune(dir string, want map[string]bool) error {
	ours := func(name string) bool {
		return strings.HasSuffix(name, ".crt") || strings.HasSuffix(name, ".key") || strings.HasSuffix(name, ".pub")
	}
	var dirs []string
	machines, err := os.ReadDir(filepath.Join(dir, mastersDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for _, m := range machines {
		if m.IsDir() {
			dirs = append(dirs, filepath.Join(mastersDir, m.Name()))
		}
	}
	for _, rel := range append([]string{"."}, dirs...) {
		entries, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := filepath.Join(rel, e.Name())
			if e.Type().IsRegular() && ours(e.Name()) && !want[name] {
				if err := os.Remove(filepath.Join(dir, name)); err != nil {
					return err
				}
			}
		}
		if rel != "." {
			// Fails harmlessly when something else is still in there.
			_ = os.Remove(filepath.Join(dir, rel))
		}
	}
	return nil
}

// writeFileAtomic writes data to a temporary file next to path, syncs it and
// renames it over path.
func writeFileAtomic(path string, mode os.FileMode, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // a no-op after the rename
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// Load reads a bundle that Save wrote to dir. Every file of the table must be
// there, parse, match its key and be signed by its CA; an error names the
// file at fault.
func Load(dir string) (*Bundle, error) {
	b, err := load(dir)
	if err != nil {
		return nil, fmt.Errorf("load pki: %w", err)
	}
	return b, nil
}

func load(dir string) (*Bundle, error) {
	path := filepath.Join(dir, clusterFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var c Cluster
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := &Bundle{Cluster: c, Specs: Table(c), creds: map[string]*credential{}}
	if err := b.loadRoots(dir); err != nil {
		return nil, err
	}
	for _, s := range b.Specs {
		if s.Kind != KindCert {
			continue
		}
		cr, err := loadCredential(dir, s)
		if err != nil {
			return nil, err
		}
		if err := cr.cert.CheckSignatureFrom(b.creds[s.CA].cert); err != nil {
			certRel, _ := storePaths(s)
			return nil, fmt.Errorf("%s: not signed by %s: %w", filepath.Join(dir, certRel), s.CA, err)
		}
		b.creds[s.ID()] = cr
	}
	return b, nil
}

// loadRoots reads the CAs, the service-account key pair, the encryption key
// and the bootstrap token into b.
func (b *Bundle) loadRoots(dir string) error {
	for _, s := range b.Specs {
		if s.Kind == KindCert {
			continue
		}
		c, err := loadCredential(dir, s)
		if err != nil {
			return err
		}
		b.creds[s.ID()] = c
	}
	path := filepath.Join(dir, encryptionKeyFile)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(data)))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(key) != EncryptionKeySize {
		return fmt.Errorf("%s: key is %d bytes, want %d", path, len(key), EncryptionKeySize)
	}
	b.EncryptionKey = key
	path = filepath.Join(dir, bootstrapTokenFile)
	if data, err = os.ReadFile(path); err != nil {
		return err
	}
	if b.BootstrapToken, err = ParseBootstrapToken(strings.TrimSpace(string(data))); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

// loadCredential reads the files of row s and checks that they parse and
// belong together. Errors for files that do not exist wrap fs.ErrNotExist.
func loadCredential(dir string, s Spec) (*credential, error) {
	certRel, keyRel := storePaths(s)
	certPath, keyPath := filepath.Join(dir, certRel), filepath.Join(dir, keyRel)
	c := &credential{}
	var err error
	if c.keyPEM, err = os.ReadFile(keyPath); err != nil {
		return nil, err
	}
	if c.key, err = parseKey(c.keyPEM); err != nil {
		return nil, fmt.Errorf("%s: %w", keyPath, err)
	}
	if c.certPEM, err = os.ReadFile(certPath); err != nil {
		return nil, err
	}
	var pub any
	if s.Kind == KindKeyPair {
		block, err := decodePEM(c.certPEM, pemPublicKey)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		if pub, err = x509.ParsePKIXPublicKey(block.Bytes); err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
	} else {
		block, err := decodePEM(c.certPEM, pemCertificate)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		if c.cert, err = x509.ParseCertificate(block.Bytes); err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		pub = c.cert.PublicKey
		if s.Kind == KindCA && !c.cert.IsCA {
			return nil, fmt.Errorf("%s: not a CA certificate", certPath)
		}
	}
	if p, ok := pub.(*ecdsa.PublicKey); !ok || !p.Equal(&c.key.PublicKey) {
		return nil, fmt.Errorf("%s: does not match the key in %s", certPath, keyPath)
	}
	return c, nil
}

func decodePEM(data []byte, typ string) (*pem.Block, error) {
	block, rest := pem.Decode(data)
	switch {
	case block == nil:
		return nil, errors.New("no PEM data")
	case block.Type != typ:
		return nil, fmt.Errorf("PEM block is %q, want %q", block.Type, typ)
	case len(bytes.TrimSpace(rest)) > 0:
		return nil, errors.New("data after the PEM block")
	}
	return block, nil
}

func parseKey(data []byte) (*ecdsa.PrivateKey, error) {
	block, err := decodePEM(data, pemECKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseECPrivateKey(block.Bytes)
}

// LoadOrGenerate returns the bundle for c kept in dir, creating dir with a
// new bundle if it holds none. It reuses the CAs, the service-account key,
// the encryption key and the bootstrap token; it keeps every leaf that still
// matches its row, is signed by the current CA and is not about to expire,
// and issues the others (a new master's certificates, apiserver certificates
// after a SAN change). The result is saved to dir.
func LoadOrGenerate(dir string, c Cluster, o Options) (*Bundle, error) {
	b, err := loadOrGenerate(dir, c, o)
	if err != nil {
		return nil, fmt.Errorf("load or generate pki in %s: %w", dir, err)
	}
	return b, nil
}

func loadOrGenerate(dir string, c Cluster, o Options) (*Bundle, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("invalid cluster: %w", err)
	}
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("invalid options: %w", err)
	}
	o = o.withDefaults()
	b := &Bundle{Cluster: c, Specs: Table(c), creds: map[string]*credential{}}
	fresh, err := isEmpty(dir, b.Specs)
	if err != nil {
		return nil, err
	}
	if fresh {
		if err := b.fill(o, nil); err != nil {
			return nil, err
		}
		return b, b.Save(dir)
	}
	// An existing directory must have all its roots: silently making a new
	// CA would cut every machine off the cluster.
	if err := b.loadRoots(dir); err != nil {
		return nil, err
	}
	now := o.Now()
	kept := map[string]bool{}
	for _, s := range b.Specs {
		if s.Kind != KindCert {
			continue
		}
		cr, err := loadCredential(dir, s)
		if errors.Is(err, fs.ErrNotExist) {
			continue // a new row: issue it
		}
		if err != nil {
			return nil, fmt.Errorf("%w (delete the file to have it reissued)", err)
		}
		if fits(s, cr, b.creds[s.CA], now, renewBefore(o.CertLifetime)) != nil {
			continue
		}
		b.creds[s.ID()] = cr
		kept[s.ID()] = true
	}
	keep := func(s Spec) bool { return s.Kind != KindCert || kept[s.ID()] }
	if err := b.fill(o, keep); err != nil {
		return nil, err
	}
	return b, b.Save(dir)
}

// isEmpty reports whether dir holds none of the roots of a bundle.
func isEmpty(dir string, specs []Spec) (bool, error) {
	paths := []string{encryptionKeyFile, bootstrapTokenFile, clusterFile}
	for _, s := range specs {
		if s.Kind != KindCert {
			certRel, keyRel := storePaths(s)
			paths = append(paths, certRel, keyRel)
		}
	}
	for _, p := range paths {
		_, err := os.Stat(filepath.Join(dir, p))
		if err == nil {
			return false, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return false, err
		}
	}
	return true, nil
}

// Reissue re-issues the leaves ids of the bundle kept in dir, each with a
// new key, its row's subject, names and usages and o's lifetime, keeps
// everything else, and saves the bundle. It is how the host renews what
// only it holds (the admin certificate).
func Reissue(dir string, o Options, ids ...string) (*Bundle, error) {
	b, err := reissue(dir, o, ids)
	if err != nil {
		return nil, fmt.Errorf("reissue %s in %s: %w", strings.Join(ids, ", "), dir, err)
	}
	return b, nil
}

func reissue(dir string, o Options, ids []string) (*Bundle, error) {
	if err := o.validate(); err != nil {
		return nil, fmt.Errorf("invalid options: %w", err)
	}
	o = o.withDefaults()
	b, err := Load(dir)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if s, ok := b.Spec(id); !ok || s.Kind != KindCert {
			return nil, fmt.Errorf("%q is not a leaf certificate of the table", id)
		}
	}
	if err := b.fill(o, func(s Spec) bool { return !slices.Contains(ids, s.ID()) }); err != nil {
		return nil, err
	}
	return b, b.Save(dir)
}
