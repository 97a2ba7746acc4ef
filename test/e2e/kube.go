package e2e

import (
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Clientset loads a kubeconfig and talks to hostPort instead of its server
// (a port forward on 127.0.0.1; the API server's certificate names it).
func Clientset(kubeconfig, hostPort string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.Host = "https://" + hostPort
	return kubernetes.NewForConfig(cfg)
}
