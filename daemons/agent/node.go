package agent

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// kubeNode is the part of a v1 Node the agent reads: name, pod CIDRs and
// addresses, decoded from JSON (the API server's answer keeps every field;
// the agent keeps these). The agent does not import k8s.io/api/core/v1 for
// its Node: importing that package links the generated code of all of its
// 240 kinds (its scheme names them all), about 2 MB of code and 4 MB of
// binary that every machine would map and never run.
type kubeNode struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`
	Spec              kubeNodeSpec   `json:"spec,omitempty"`
	Status            kubeNodeStatus `json:"status,omitempty"`
}

type kubeNodeSpec struct {
	PodCIDR  string   `json:"podCIDR,omitempty"`
	PodCIDRs []string `json:"podCIDRs,omitempty"`
}

type kubeNodeStatus struct {
	Addresses []kubeNodeAddress `json:"addresses,omitempty"`
}

// kubeNodeAddress is a Node's status.addresses entry; Type is Hostname,
// InternalIP, ExternalIP, InternalDNS or ExternalDNS.
type kubeNodeAddress struct {
	Type    string `json:"type"`
	Address string `json:"address"`
}

// nodeInternalIP is the address type routes go through.
const nodeInternalIP = "InternalIP"

type kubeNodeList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`
	Items           []kubeNode `json:"items"`
}

// coreV1 is the core API group's version.
var coreV1 = schema.GroupVersion{Version: "v1"}

func (n *kubeNode) DeepCopyObject() runtime.Object {
	c := &kubeNode{
		TypeMeta: n.TypeMeta,
		Spec:     kubeNodeSpec{PodCIDR: n.Spec.PodCIDR, PodCIDRs: slices.Clone(n.Spec.PodCIDRs)},
		Status:   kubeNodeStatus{Addresses: slices.Clone(n.Status.Addresses)},
	}
	n.ObjectMeta.DeepCopyInto(&c.ObjectMeta)
	return c
}

func (l *kubeNodeList) DeepCopyObject() runtime.Object {
	c := &kubeNodeList{TypeMeta: l.TypeMeta, Items: make([]kubeNode, len(l.Items))}
	l.ListMeta.DeepCopyInto(&c.ListMeta)
	for i := range l.Items {
		c.Items[i] = *l.Items[i].DeepCopyObject().(*kubeNode)
	}
	return c
}
