package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// EtcdMemberInfo is one member of the etcd cluster's member list.
type EtcdMemberInfo struct {
	ID       string   `json:"id"` // hex, as etcdctl shows it
	Name     string   `json:"name,omitempty"`
	PeerURLs []string `json:"peerURLs"`
	// Started: the member has connected (a member added but not yet
	// joined has no name).
	Started bool `json:"started"`
}

// ReaddFunc removes the member called name (or with peerURL) from the etcd
// cluster, if there is one, and adds a new member with peerURL: what a
// machine that replaces it joins. It returns the member list after.
type ReaddFunc func(ctx context.Context, name, peerURL string) ([]EtcdMemberInfo, error)

// readdTimeout bounds a member re-add: two membership changes, each a
// Raft proposal on a cluster that may have lost a member.
const readdTimeout = time.Minute

// EtcdReaddRequest is POST /v1/etcd/members/{name}/readd's body.
type EtcdReaddRequest struct {
	PeerURL string `json:"peerURL"`
}

// serveEtcdReadd is POST /v1/etcd/members/{name}/readd (kubeup replace of
// a master, asked of another master's agent).
func (d *Daemon) serveEtcdReadd(w http.ResponseWriter, r *http.Request) {
	if d.readd == nil {
		http.Error(w, "this machine has no etcd member", http.StatusNotFound)
		return
	}
	name := r.PathValue("name")
	var req EtcdReaddRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&req); err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if u, err := url.Parse(req.PeerURL); err != nil || u.Scheme != "https" || u.Port() == "" {
		http.Error(w, fmt.Sprintf("peerURL %q: want https://IP:PORT", req.PeerURL), http.StatusBadRequest)
		return
	}
	if name == d.cfg.Machine {
		http.Error(w, "a member cannot be re-added through its own machine: ask another master's agent", http.StatusConflict)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), readdTimeout)
	defer cancel()
	d.log.Warn("etcd member re-add from the admin API", "member", name, "peerURL", req.PeerURL)
	members, err := d.readd(ctx, name, req.PeerURL)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	writeJSON(w, http.StatusOK, members)
}
