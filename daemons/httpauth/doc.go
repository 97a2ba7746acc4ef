// Package httpauth is the HTTPS authentication kubeup's own daemons share
// (kubeup-agent, kubeup-addons): serving certificate and client CA reloaded
// from files, client certificates verified in the handler, and handlers that
// admit a client certificate from the cluster CA or a bearer token the API
// server vouches for, the way the Kubernetes components' delegated
// authentication and authorisation do.
//
// It needs only the two review calls of the Kubernetes API (Reviewer), not
// client-go's clientset, so the agent's small static binary stays small.
package httpauth
