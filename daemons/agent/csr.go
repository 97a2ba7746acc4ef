package agent

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// kubeCSR is the part of a certificates.k8s.io/v1 CertificateSigningRequest
// the agent writes and reads, decoded from JSON: for the reason kubeNode is
// not core/v1's Node (the generated package would link its kinds' code
// into a binary with a 20 MB budget).
type kubeCSR struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              kubeCSRSpec   `json:"spec"`
	Status            kubeCSRStatus `json:"status,omitempty"`
}

type kubeCSRSpec struct {
	// Request is the PEM CERTIFICATE REQUEST (base64 in JSON, as []byte).
	Request           []byte   `json:"request"`
	SignerName        string   `json:"signerName"`
	ExpirationSeconds *int32   `json:"expirationSeconds,omitempty"`
	Usages            []string `json:"usages,omitempty"`
	// Username is who asked, set by the API server.
	Username string `json:"username,omitempty"`
}

type kubeCSRStatus struct {
	Conditions []kubeCSRCondition `json:"conditions,omitempty"`
	// Certificate is the signed PEM chain, set by the signer.
	Certificate []byte `json:"certificate,omitempty"`
}

// kubeCSRCondition: Type is Approved, Denied or Failed.
type kubeCSRCondition struct {
	Type    string `json:"type"`
	Status  string `json:"status"`
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// certificatesV1 is the CSR API's group version.
var certificatesV1 = schema.GroupVersion{Group: "certificates.k8s.io", Version: "v1"}

func (c *kubeCSR) DeepCopyObject() runtime.Object {
	out := &kubeCSR{TypeMeta: c.TypeMeta, Spec: c.Spec, Status: c.Status}
	c.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.Request = slices.Clone(c.Spec.Request)
	out.Spec.Usages = slices.Clone(c.Spec.Usages)
	if c.Spec.ExpirationSeconds != nil {
		s := *c.Spec.ExpirationSeconds
		out.Spec.ExpirationSeconds = &s
	}
	out.Status.Conditions = slices.Clone(c.Status.Conditions)
	out.Status.Certificate = slices.Clone(c.Status.Certificate)
	return out
}

// failed says why the request will never be signed: a Denied or Failed
// condition; "" while it may still be.
func (c *kubeCSR) failed() string {
	for _, cond := range c.Status.Conditions {
		if (cond.Type == "Denied" || cond.Type == "Failed") && cond.Status != "False" {
			return cond.Type + ": " + cond.Reason + " " + cond.Message
		}
	}
	return ""
}
