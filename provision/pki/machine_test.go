package pki

import (
	"bytes"
	"os"
	"slices"
	"strings"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
)

func filePaths(files []File) []string {
	var p []string
	for _, f := range files {
		p = append(p, f.Path)
	}
	return p
}

func TestMachineFiles(t *testing.T) {
	b := mustGenerate(t, testCluster(3), testOptions(61))
	pki := func(names ...string) []string {
		var out []string
		for _, n := range names {
			out = append(out, Dir+"/"+n)
		}
		slices.Sort(out)
		return out
	}

	node := b.MachineFiles(PlaceNode, "node-0")
	if got, want := filePaths(node), pki("ca.crt", "kube-proxy-client.crt", "kube-proxy-client.key", "kubeup-agent.crt", "kubeup-agent.key"); !slices.Equal(got, want) {
		t.Errorf("node files:\n%q\nwant\n%q", got, want)
	}

	master := b.MachineFiles(PlaceMaster, "master-1")
	want := pki("ca.crt", "ca.key", "etcd/ca.crt", "etcd/ca.key", "front-proxy-ca.crt", "front-proxy-ca.key", "sa.pub", "sa.key",
		"apiserver.crt", "apiserver.key", "apiserver-kubelet-client.crt", "apiserver-kubelet-client.key",
		"apiserver-etcd-client.crt", "apiserver-etcd-client.key", "front-proxy-client.crt", "front-proxy-client.key",
		"etcd/server.crt", "etcd/server.key", "etcd/peer.crt", "etcd/peer.key",
		"etcd/healthcheck-client.crt", "etcd/healthcheck-client.key",
		"controller-manager-client.crt", "controller-manager-client.key", "controller-manager.crt", "controller-manager.key",
		"scheduler-client.crt", "scheduler-client.key", "scheduler.crt", "scheduler.key",
		"kubelet-client.crt", "kubelet-client.key", "kubelet.crt", "kubelet.key",
		"kube-proxy-client.crt", "kube-proxy-client.key", "kubeup-agent.crt", "kubeup-agent.key",
		"addon-manager-client.crt", "addon-manager-client.key")
	if got := filePaths(master); !slices.Equal(got, want) {
		t.Errorf("master files:\n%q\nwant\n%q", got, want)
	}
	for _, f := range master {
		secret := strings.HasSuffix(f.Path, ".key")
		if (secret && f.Mode != 0o600) || (!secret && f.Mode != 0o644) {
			t.Errorf("%s: mode %v", f.Path, f.Mode)
		}
		if bytes.Contains(f.Content, []byte("PRIVATE KEY")) != secret {
			t.Errorf("%s: private key in the wrong file", f.Path)
		}
	}
	// Per-master files are that master's own.
	apiCert, apiKey, _ := b.Cert("apiserver/master-1")
	for _, f := range master {
		switch f.Path {
		case Dir + "/apiserver.crt":
			if !bytes.Equal(f.Content, apiCert) {
				t.Error("master-1 got another master's apiserver certificate")
			}
		case Dir + "/apiserver.key":
			if !bytes.Equal(f.Content, apiKey) {
				t.Error("master-1 got another master's apiserver key")
			}
		}
	}
	if files := b.MachineFiles(PlaceHost, ""); len(files) != 0 {
		t.Errorf("host files %q", filePaths(files))
	}
	// A master not in the cluster gets only the shared files.
	if got := filePaths(b.MachineFiles(PlaceMaster, "master-9")); slices.Contains(got, Dir+"/apiserver.crt") {
		t.Error("an unknown master got an apiserver certificate")
	}
	// Changing a returned file does not change the bundle.
	node[0].Content[0] ^= 1
	if bytes.Equal(node[0].Content, b.CAPEM(KubernetesCA)) {
		t.Error("MachineFiles shares memory with the bundle")
	}
}

func TestKubeconfig(t *testing.T) {
	b := mustGenerate(t, testCluster(2), testOptions(71))
	const server = "https://10.0.0.10:6443"
	wantUsers := map[string]struct{ cn, certFile string }{
		"admin":              {"kubernetes-admin", ""},
		"controller-manager": {"system:kube-controller-manager", Dir + "/controller-manager-client.crt"},
		"scheduler":          {"system:kube-scheduler", Dir + "/scheduler-client.crt"},
		"kubelet:master-0":   {"system:node:master-0", Dir + "/kubelet-client.crt"},
		"kubelet:master-1":   {"system:node:master-1", Dir + "/kubelet-client.crt"},
		"kube-proxy":         {"system:kube-proxy", Dir + "/kube-proxy-client.crt"},
		"addon-manager":      {"system:kubeup-addon-manager", Dir + "/addon-manager-client.crt"},
		"kubeup-agent":       {"kubeup-agent", Dir + "/kubeup-agent.crt"},
	}
	if got := b.KubeconfigUsers(); len(got) != len(wantUsers) {
		t.Errorf("KubeconfigUsers() = %q", got)
	}
	for _, user := range b.KubeconfigUsers() {
		w, ok := wantUsers[user]
		if !ok {
			t.Errorf("unexpected user %q", user)
			continue
		}
		for _, embed := range []bool{false, true} {
			data, err := b.Kubeconfig(user, server, embed)
			if !embed && w.certFile == "" {
				if err == nil || !strings.Contains(err.Error(), "embed") {
					t.Errorf("%s: a host-only user rendered without embedding: %v", user, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("%s: %v", user, err)
			}
			cfg, err := clientcmd.Load(data)
			if err != nil {
				t.Fatalf("%s: clientcmd.Load: %v", user, err)
			}
			ctx := cfg.Contexts[cfg.CurrentContext]
			if ctx == nil || ctx.AuthInfo != w.cn || ctx.Cluster != "demo" {
				t.Fatalf("%s: current context %q = %+v", user, cfg.CurrentContext, ctx)
			}
			cluster, auth := cfg.Clusters[ctx.Cluster], cfg.AuthInfos[ctx.AuthInfo]
			if cluster == nil || auth == nil || cluster.Server != server {
				t.Fatalf("%s: cluster %+v, user %+v", user, cluster, auth)
			}
			cert, key, _ := b.Cert(mustUserID(t, b, user))
			if embed {
				if !bytes.Equal(cluster.CertificateAuthorityData, b.CAPEM(KubernetesCA)) ||
					!bytes.Equal(auth.ClientCertificateData, cert) || !bytes.Equal(auth.ClientKeyData, key) ||
					cluster.CertificateAuthority != "" || auth.ClientCertificate != "" {
					t.Errorf("%s: embedded kubeconfig does not carry the bundle's PEMs", user)
				}
			} else if cluster.CertificateAuthority != Dir+"/ca.crt" || auth.ClientCertificate != w.certFile ||
				auth.ClientKey != strings.TrimSuffix(w.certFile, ".crt")+".key" || len(auth.ClientKeyData) != 0 {
				t.Errorf("%s: file references %q %q %q", user, cluster.CertificateAuthority, auth.ClientCertificate, auth.ClientKey)
			}
			// clientcmd accepts it as a client configuration.
			if _, err := clientcmd.NewDefaultClientConfig(*cfg, nil).ClientConfig(); err != nil && embed {
				t.Errorf("%s: client config: %v", user, err)
			}
		}
	}
	for _, bad := range []struct{ user, server string }{
		{"nobody", server}, {"kubelet:master-7", server}, {"admin", "http://10.0.0.10:6443"}, {"admin", "10.0.0.10:6443"},
	} {
		if _, err := b.Kubeconfig(bad.user, bad.server, true); err == nil {
			t.Errorf("Kubeconfig(%q, %q) succeeded", bad.user, bad.server)
		}
	}
}

func mustUserID(t *testing.T, b *Bundle, user string) string {
	t.Helper()
	s, err := b.userSpec(user)
	if err != nil {
		t.Fatal(err)
	}
	return s.ID()
}

func TestBootstrapKubeconfig(t *testing.T) {
	b := mustGenerate(t, testCluster(1), testOptions(81))
	ca := b.CAPEM(KubernetesCA)
	data, err := BootstrapKubeconfig("https://10.0.0.10:6443", ca, b.BootstrapToken.String())
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := clientcmd.Load(data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := cfg.Contexts[cfg.CurrentContext]
	if ctx == nil || cfg.AuthInfos[ctx.AuthInfo].Token != b.BootstrapToken.String() ||
		cfg.Clusters[ctx.Cluster].Server != "https://10.0.0.10:6443" || !bytes.Equal(cfg.Clusters[ctx.Cluster].CertificateAuthorityData, ca) {
		t.Errorf("bootstrap kubeconfig:\n%s", data)
	}
	leaf, _, _ := b.Cert("admin")
	for _, bad := range []struct {
		ca    []byte
		token string
	}{
		{ca, "not-a-token"}, {[]byte("junk"), b.BootstrapToken.String()}, {leaf, b.BootstrapToken.String()},
	} {
		if _, err := BootstrapKubeconfig("https://10.0.0.10:6443", bad.ca, bad.token); err == nil {
			t.Errorf("accepted CA %.20q token %q", bad.ca, bad.token)
		}
	}
}

func TestKubeconfigFromLoadedBundle(t *testing.T) {
	dir := t.TempDir()
	if err := mustGenerate(t, testCluster(1), testOptions(91)).Save(dir); err != nil {
		t.Fatal(err)
	}
	b, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := b.Kubeconfig("admin", "https://127.0.0.1:6443", true)
	if err != nil {
		t.Fatal(err)
	}
	path := dir + "/admin.conf"
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := clientcmd.LoadFromFile(path); err != nil {
		t.Fatal(err)
	}
}
