package components

import (
	"encoding/base64"
	"fmt"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig paths on machines.
const (
	ControllerManagerKubeconfig = KubernetesDir + "/controller-manager.conf"
	SchedulerKubeconfig         = KubernetesDir + "/scheduler.conf"
	KubeletKubeconfig           = KubernetesDir + "/kubelet.conf"
	BootstrapKubeconfig         = KubernetesDir + "/bootstrap-kubelet.conf"
	KubeProxyKubeconfig         = KubernetesDir + "/kube-proxy.conf"
	AgentKubeconfig             = KubernetesDir + "/kubeup-agent.conf"
)

// certKubeconfig renders a kubeconfig whose CA and client certificate are
// files on the machine (so it carries no secret itself), with client-go's
// clientcmd rather than by hand.
func certKubeconfig(cluster, server, user, certFile, keyFile string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: pki("ca.crt")}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{ClientCertificate: certFile, ClientKey: keyFile}
	return writeKubeconfig(cfg, cluster, user)
}

// tokenKubeconfig renders a kubeconfig that authenticates with a token.
func tokenKubeconfig(cluster, server, user, token string) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[cluster] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: pki("ca.crt")}
	cfg.AuthInfos[user] = &clientcmdapi.AuthInfo{Token: token}
	return writeKubeconfig(cfg, cluster, user)
}

func writeKubeconfig(cfg *clientcmdapi.Config, cluster, user string) ([]byte, error) {
	ctx := user + "@" + cluster
	cfg.Contexts[ctx] = &clientcmdapi.Context{Cluster: cluster, AuthInfo: user}
	cfg.CurrentContext = ctx
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("write kubeconfig for %s: %w", user, err)
	}
	return data, nil
}

// localAPIServer is the API server on the same master: control-plane
// components talk to their own machine's API server.
func localAPIServer() string { return fmt.Sprintf("https://127.0.0.1:%d", APIServerPort) }

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
