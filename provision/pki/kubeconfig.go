package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig users and the rows whose certificates they authenticate with.
// "kubelet:<master>" names a master's kubelet.
var kubeconfigUsers = map[string]string{
	"admin":              "admin",
	"controller-manager": "controller-manager-client",
	"scheduler":          "scheduler-client",
	"kube-proxy":         "kube-proxy",
	"addon-manager":      "addon-manager",
	"kubeup-agent":       "kubeup-agent",
}

// KubeconfigUsers lists the users Kubeconfig accepts for b's cluster.
func (b *Bundle) KubeconfigUsers() []string {
	users := []string{"admin", "controller-manager", "scheduler"}
	for _, m := range b.Cluster.Masters {
		users = append(users, "kubelet:"+m.Name)
	}
	return append(users, "kube-proxy", "addon-manager", "kubeup-agent")
}

// userSpec finds the row of a kubeconfig user.
func (b *Bundle) userSpec(user string) (Spec, error) {
	id, ok := kubeconfigUsers[user]
	if m, isKubelet := strings.CutPrefix(user, "kubelet:"); isKubelet {
		id, ok = "kubelet-client/"+m, true
	}
	s, found := b.Spec(id)
	if !ok || !found {
		return Spec{}, fmt.Errorf("unknown kubeconfig user %q (want one of %s)", user, strings.Join(b.KubeconfigUsers(), ", "))
	}
	return s, nil
}

func clusterName(c Cluster) string {
	if c.Name == "" {
		return "kubernetes"
	}
	return c.Name
}

// Kubeconfig renders a kubeconfig for user (see KubeconfigUsers) talking to
// server (an https URL). With embed, the CA, certificate and key are inlined
// (the admin kubeconfig on the host); without, it references the files on
// the machine (Spec.CertFile/KeyFile), which fails for host-only users. The
// kubeconfig's user is named after the certificate's common name, as
// kubeadm does.
func (b *Bundle) Kubeconfig(user, server string, embed bool) ([]byte, error) {
	out, err := b.kubeconfig(user, server, embed)
	if err != nil {
		return nil, fmt.Errorf("kubeconfig for %s: %w", user, err)
	}
	return out, nil
}

func (b *Bundle) kubeconfig(user, server string, embed bool) ([]byte, error) {
	if err := checkServer(server); err != nil {
		return nil, err
	}
	s, err := b.userSpec(user)
	if err != nil {
		return nil, err
	}
	caSpec, _ := b.Spec(KubernetesCA)
	cred, ca := b.creds[s.ID()], b.creds[KubernetesCA]
	if cred == nil || ca == nil {
		return nil, fmt.Errorf("%s is missing from the bundle", s.ID())
	}
	cluster := &clientcmdapi.Cluster{Server: server}
	auth := &clientcmdapi.AuthInfo{}
	if embed {
		cluster.CertificateAuthorityData = ca.certPEM
		auth.ClientCertificateData, auth.ClientKeyData = cred.certPEM, cred.keyPEM
	} else {
		if s.CertFile == "" {
			return nil, fmt.Errorf("%s stays on the host and has no files on machines: embed it", s.ID())
		}
		cluster.CertificateAuthority = caSpec.CertFile
		auth.ClientCertificate, auth.ClientKey = s.CertFile, s.KeyFile
	}
	return writeKubeconfig(clusterName(b.Cluster), s.CommonName, cluster, auth)
}

func writeKubeconfig(clusterName, userName string, cluster *clientcmdapi.Cluster, auth *clientcmdapi.AuthInfo) ([]byte, error) {
	ctxName := userName + "@" + clusterName
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[clusterName] = cluster
	cfg.AuthInfos[userName] = auth
	cfg.Contexts[ctxName] = &clientcmdapi.Context{Cluster: clusterName, AuthInfo: userName}
	cfg.CurrentContext = ctxName
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig: %w", err)
	}
	return out, nil
}

func checkServer(server string) error {
	u, err := url.Parse(server)
	if err != nil {
		return fmt.Errorf("server %q: %w", server, err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("server %q is not an https:// URL", server)
	}
	return nil
}

// BootstrapKubeconfig renders the kubeconfig a node's kubelet uses for TLS
// bootstrapping: the cluster CA inlined and the bootstrap token, in the
// names kubeadm uses (cluster "kubernetes", user "tls-bootstrap-token-user").
func BootstrapKubeconfig(server string, caPEM []byte, token string) ([]byte, error) {
	out, err := bootstrapKubeconfig(server, caPEM, token)
	if err != nil {
		return nil, fmt.Errorf("bootstrap kubeconfig: %w", err)
	}
	return out, nil
}

func bootstrapKubeconfig(server string, caPEM []byte, token string) ([]byte, error) {
	if err := checkServer(server); err != nil {
		return nil, err
	}
	if _, err := ParseBootstrapToken(token); err != nil {
		return nil, err
	}
	block, err := decodePEM(caPEM, pemCertificate)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	if !ca.IsCA {
		return nil, errors.New("CA: not a CA certificate")
	}
	return writeKubeconfig("kubernetes", "tls-bootstrap-token-user",
		&clientcmdapi.Cluster{Server: server, CertificateAuthorityData: caPEM},
		&clientcmdapi.AuthInfo{Token: token})
}
