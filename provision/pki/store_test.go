package pki

import (
	"bytes"
	"io/fs"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSaveLoadRoundTrip(t *testing.T) {
	b := mustGenerate(t, testCluster(3), testOptions(21))
	dir := filepath.Join(t.TempDir(), "state", "pki")
	if err := b.Save(dir); err != nil {
		t.Fatal(err)
	}
	got, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := pems(b)
	if have := pems(got); !maps.EqualFunc(have, want, bytes.Equal) {
		t.Error("loaded bundle differs from the saved one")
	}
	if got.Cluster.Name != "demo" || len(got.Specs) != len(b.Specs) || !got.Cluster.Masters[2].IP.Equal(net.ParseIP("10.0.0.12")) {
		t.Errorf("loaded cluster %+v", got.Cluster)
	}
	// Saving again changes nothing.
	before := readTree(t, dir)
	if err := got.Save(dir); err != nil {
		t.Fatal(err)
	}
	if !maps.EqualFunc(before, readTree(t, dir), bytes.Equal) {
		t.Error("a second Save changed the directory")
	}

	// Modes: directories 0700, secrets 0600, the rest 0644; no temporary files left.
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		name := d.Name()
		var want fs.FileMode
		switch {
		case d.IsDir():
			want = fs.ModeDir | 0o700
		case strings.HasSuffix(name, ".key"), name == encryptionKeyFile, name == bootstrapTokenFile:
			want = 0o600
		case strings.HasSuffix(name, ".crt"), strings.HasSuffix(name, ".pub"), name == clusterFile:
			want = 0o644
		default:
			t.Errorf("unexpected file %s", path)
			return nil
		}
		if info.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, info.Mode(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// 35 rows with two files each, the encryption key, the token, cluster.json.
	if n := len(before); n != 2*len(b.Specs)+3 {
		t.Errorf("%d files, want %d", n, 2*len(b.Specs)+3)
	}
}

func TestSaveTightensExistingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mustGenerate(t, testCluster(1), testOptions(1)).Save(dir); err != nil {
		t.Fatal(err)
	}
	if info, _ := os.Stat(dir); info.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v", info.Mode())
	}
}

func TestLoadErrorsNameTheFile(t *testing.T) {
	b := mustGenerate(t, testCluster(2), testOptions(22))
	other := mustGenerate(t, testCluster(2), testOptions(23))
	_, otherKey, _ := other.Cert("apiserver/master-1")
	_, otherCAKey, _ := other.Cert(KubernetesCA)
	otherCert, _, _ := other.Cert("admin")
	saved := func() map[string][]byte {
		dir := t.TempDir()
		if err := b.Save(dir); err != nil {
			t.Fatal(err)
		}
		return readTree(t, dir)
	}()
	for _, tc := range []struct {
		name   string
		file   string
		breakf func(path string) error
		want   string
	}{
		{"missing cert", "masters/master-1/apiserver.crt", os.Remove, "no such file"},
		{"missing CA key", "etcd-ca.key", os.Remove, "no such file"},
		{"missing token", bootstrapTokenFile, os.Remove, "no such file"},
		{"missing cluster", clusterFile, os.Remove, "no such file"},
		{"garbage cert", "kube-proxy.crt", writeString("not a PEM"), "no PEM data"},
		{"truncated key", "front-proxy-ca.key", truncate, "no PEM data"},
		{"wrong PEM type", "service-account.pub", writeString("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), `want "PUBLIC KEY"`},
		{"key of another cert", "masters/master-1/apiserver.key", writeBytes(otherKey), "does not match the key"},
		{"cert of another CA", "admin.crt", writeBytes(otherCert), "does not match the key"},
		{"CA key replaced", "kubernetes-ca.key", writeBytes(otherCAKey), "does not match the key"},
		{"short encryption key", encryptionKeyFile, writeString("c2hvcnQ=\n"), "key is 5 bytes"},
		{"bad token", bootstrapTokenFile, writeString("nope\n"), "bootstrap token is not"},
		{"bad cluster", clusterFile, writeString(`{"name": "x"}`), "masters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			writeTree(t, dir, saved)
			path := filepath.Join(dir, tc.file)
			if err := tc.breakf(path); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %s and say %q", err, path, tc.want)
			}
		})
	}
	t.Run("leaf signed by another CA", func(t *testing.T) {
		dir := t.TempDir()
		writeTree(t, dir, saved)
		cert, key, _ := other.Cert("admin")
		_ = writeBytes(key)(filepath.Join(dir, "admin.key"))
		_ = writeBytes(cert)(filepath.Join(dir, "admin.crt"))
		_, err := Load(dir)
		if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "admin.crt")) || !strings.Contains(err.Error(), "not signed by kubernetes-ca") {
			t.Errorf("error %v", err)
		}
	})
}

// writeTree writes files (from readTree) under dir.
func writeTree(t *testing.T, dir string, files map[string][]byte) {
	t.Helper()
	for rel, data := range files {
		path := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

func writeString(s string) func(string) error { return writeBytes([]byte(s)) }

func writeBytes(data []byte) func(string) error {
	return func(path string) error { return os.WriteFile(path, data, 0o600) }
}

func truncate(path string) error { return os.Truncate(path, 20) }

// changed lists the state files that differ between two directory snapshots.
func changed(before, after map[string][]byte) []string {
	var out []string
	for k := range after {
		if !bytes.Equal(before[k], after[k]) {
			out = append(out, k)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			out = append(out, k+" (deleted)")
		}
	}
	slices.Sort(out)
	return out
}

func TestLoadOrGenerate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	c := testCluster(3)
	b, err := LoadOrGenerate(dir, c, testOptions(31))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatalf("LoadOrGenerate did not save: %v", err)
	}
	gen := readTree(t, dir)

	t.Run("unchanged", func(t *testing.T) {
		again, err := LoadOrGenerate(dir, c, testOptions(32))
		if err != nil {
			t.Fatal(err)
		}
		if ch := changed(gen, readTree(t, dir)); len(ch) > 0 {
			t.Errorf("files changed with nothing to change: %v", ch)
		}
		if !maps.EqualFunc(pems(again), pems(b), bytes.Equal) {
			t.Error("returned bundle differs")
		}
	})

	t.Run("add a master", func(t *testing.T) {
		c4 := testCluster(4)
		b4, err := LoadOrGenerate(dir, c4, testOptions(33))
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, name := range []string{"apiserver", "controller-manager-server", "etcd-peer", "etcd-server",
			"kubelet-client", "kubelet-server", "scheduler-server"} {
			want = append(want, "masters/master-3/"+name+".crt", "masters/master-3/"+name+".key")
		}
		want = append(want, clusterFile)
		slices.Sort(want)
		if ch := changed(gen, readTree(t, dir)); !slices.Equal(ch, want) {
			t.Errorf("changed files:\n%v\nwant:\n%v", ch, want)
		}
		if !bytes.Equal(b4.CAPEM(KubernetesCA), b.CAPEM(KubernetesCA)) || b4.BootstrapToken != b.BootstrapToken ||
			!bytes.Equal(b4.EncryptionKey, b.EncryptionKey) {
			t.Error("roots changed")
		}
		if _, err := Load(dir); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("change the API server SANs", func(t *testing.T) {
		before := readTree(t, dir)
		c4 := testCluster(4)
		c4.ExtraAPIServerSANs = append(c4.ExtraAPIServerSANs, "lb.demo.example.com")
		if _, err := LoadOrGenerate(dir, c4, testOptions(34)); err != nil {
			t.Fatal(err)
		}
		var want []string
		for i := range 4 {
			want = append(want, "masters/master-"+string(rune('0'+i))+"/apiserver.crt", "masters/master-"+string(rune('0'+i))+"/apiserver.key")
		}
		want = append(want, clusterFile)
		slices.Sort(want)
		if ch := changed(before, readTree(t, dir)); !slices.Equal(ch, want) {
			t.Errorf("changed files:\n%v\nwant:\n%v", ch, want)
		}
	})

	t.Run("remove a master", func(t *testing.T) {
		c2 := testCluster(4)
		c2.ExtraAPIServerSANs = append(c2.ExtraAPIServerSANs, "lb.demo.example.com")
		c2.Masters = slices.Delete(c2.Masters, 1, 2)
		before := readTree(t, dir)
		if _, err := LoadOrGenerate(dir, c2, testOptions(35)); err != nil {
			t.Fatal(err)
		}
		after := readTree(t, dir)
		for _, f := range changed(before, after) {
			if f != clusterFile && !strings.HasSuffix(f, " (deleted)") {
				t.Errorf("%s changed", f)
			}
			if strings.HasSuffix(f, " (deleted)") && !strings.HasPrefix(f, "masters/master-1/") {
				t.Errorf("%s", f)
			}
		}
		if _, err := os.Stat(filepath.Join(dir, "masters", "master-1")); !os.IsNotExist(err) {
			t.Errorf("master-1's directory is still there: %v", err)
		}
	})
}

func TestLoadOrGenerateRenewsExpiringLeaves(t *testing.T) {
	dir := t.TempDir()
	c := testCluster(1)
	if _, err := LoadOrGenerate(dir, c, testOptions(41)); err != nil {
		t.Fatal(err)
	}
	before := readTree(t, dir)
	o := testOptions(42)
	later := clock.Add(350 * 24 * time.Hour) // within 30 days of the leaves' expiry
	o.Now = func() time.Time { return later }
	b, err := LoadOrGenerate(dir, c, o)
	if err != nil {
		t.Fatal(err)
	}
	after := readTree(t, dir)
	for _, s := range b.Specs {
		certRel, _ := storePaths(s)
		renewed := !bytes.Equal(before[certRel], after[certRel])
		if renewed != (s.Kind == KindCert) {
			t.Errorf("%s: renewed=%v", s.ID(), renewed)
		}
	}
	if leaf, _ := b.Certificate("admin"); !leaf.NotBefore.Equal(later.Add(-5 * time.Minute)) {
		t.Errorf("renewed leaf starts %v", leaf.NotBefore)
	}
}

// Reissue renews only the rows it is given (the host's admin certificate),
// with the lifetime it is given, and keeps every other file byte for byte.
func TestReissue(t *testing.T) {
	dir := t.TempDir()
	c := testCluster(1)
	if _, err := LoadOrGenerate(dir, c, testOptions(43)); err != nil {
		t.Fatal(err)
	}
	before := readTree(t, dir)
	o := testOptions(44)
	later := clock.Add(time.Hour)
	o.Now, o.CertLifetime = func() time.Time { return later }, 30*time.Minute
	b, err := Reissue(dir, o, "admin")
	if err != nil {
		t.Fatal(err)
	}
	after := readTree(t, dir)
	for rel := range before {
		changed := !bytes.Equal(before[rel], after[rel])
		if changed != (rel == "admin.crt" || rel == "admin.key") {
			t.Errorf("%s: changed=%v", rel, changed)
		}
	}
	leaf, _ := b.Certificate("admin")
	ca, _ := b.Certificate(KubernetesCA)
	if !leaf.NotAfter.Equal(later.Add(30*time.Minute)) || leaf.CheckSignatureFrom(ca) != nil || leaf.Subject.CommonName != "kubernetes-admin" {
		t.Errorf("reissued admin: %v until %v", leaf.Subject, leaf.NotAfter)
	}
	if _, err := Load(dir); err != nil {
		t.Errorf("the saved bundle does not load: %v", err)
	}
	for _, bad := range []string{"nobody", KubernetesCA} {
		if _, err := Reissue(dir, o, bad); err == nil {
			t.Errorf("reissued %q", bad)
		}
	}
}

func TestLoadOrGenerateRefusesBrokenState(t *testing.T) {
	c := testCluster(1)
	for _, tc := range []struct {
		name, file string
		breakf     func(string) error
		want       string
	}{
		// A missing CA with the rest present must not silently become a new CA.
		{"missing CA", "kubernetes-ca.crt", os.Remove, "kubernetes-ca.crt: no such file"},
		{"corrupt leaf", "admin.crt", writeString("junk"), "admin.crt: no PEM data (delete the file to have it reissued)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := LoadOrGenerate(dir, c, testOptions(51)); err != nil {
				t.Fatal(err)
			}
			if err := tc.breakf(filepath.Join(dir, tc.file)); err != nil {
				t.Fatal(err)
			}
			_, err := LoadOrGenerate(dir, c, testOptions(52))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("missing leaf is reissued", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := LoadOrGenerate(dir, c, testOptions(53)); err != nil {
			t.Fatal(err)
		}
		before := readTree(t, dir)
		if err := os.Remove(filepath.Join(dir, "kube-proxy.key")); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadOrGenerate(dir, c, testOptions(54)); err != nil {
			t.Fatal(err)
		}
		if ch := changed(before, readTree(t, dir)); !slices.Equal(ch, []string{"kube-proxy.crt", "kube-proxy.key"}) {
			t.Errorf("changed %v", ch)
		}
	})
}
