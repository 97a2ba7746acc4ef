package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"kubeup.dev/kubeup/components/agentconfig"
)

// unitActionTimeout bounds a start or restart through the admin API: a
// start waits for the unit's readiness probe (up to 11 minutes for the API
// server after a restore, under load).
const unitActionTimeout = 12 * time.Minute

// UnitActionResult is POST /v1/units/<unit>/<action>'s answer.
type UnitActionResult struct {
	Unit    string  `json:"unit"`
	Action  string  `json:"action"`
	Seconds float64 `json:"seconds"`
}

// serveUnitAction is POST /v1/units/{name}/{action}: start, stop or
// restart one of the configured units (the host stops the API servers
// around a restore). Other units are refused, and so is the agent's own:
// stopped, it could not be started again through this API.
func (d *Daemon) serveUnitAction(w http.ResponseWriter, r *http.Request) {
	name, action := r.PathValue("name"), r.PathValue("action")
	do := map[string]func(context.Context, string) error{
		"start": d.control.StartUnit, "stop": d.control.StopUnit, "restart": d.control.RestartUnit,
	}[action]
	switch {
	case do == nil:
		http.Error(w, fmt.Sprintf("action %q: want start, stop or restart", action), http.StatusNotFound)
		return
	case name == agentconfig.AgentUnit:
		http.Error(w, fmt.Sprintf("%s is the agent itself: use systemctl on the machine", name), http.StatusForbidden)
		return
	case !slices.Contains(d.cfg.Units, name):
		http.Error(w, fmt.Sprintf("unit %q is not one of this machine's units (%s)", name, strings.Join(d.cfg.Units, ", ")), http.StatusForbidden)
		return
	}
	// Once asked, the job runs to its end even if the client goes away.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), unitActionTimeout)
	defer cancel()
	start := d.now()
	d.log.Info("unit action from the admin API", "unit", name, "action", action)
	if err := do(ctx, name); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, UnitActionResult{Unit: name, Action: action, Seconds: d.now().Sub(start).Seconds()})
}

// SnapshotErrorTrailer carries a snapshot stream's failure once its body
// has started (the status is sent by then).
const SnapshotErrorTrailer = "Kubeup-Snapshot-Error"

// serveEtcdSnapshot is GET /v1/etcd/snapshot: a fresh snapshot of the
// local member streamed as etcd sends it, the database then its sha256,
// which the receiver checks. It is not kept on the machine.
func (d *Daemon) serveEtcdSnapshot(w http.ResponseWriter, r *http.Request) {
	if d.snapshot == nil {
		http.Error(w, "this machine has no etcd member", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), snapshotTimeout)
	defer cancel()
	rc, err := d.snapshot(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer rc.Close()
	w.Header().Set("Trailer", SnapshotErrorTrailer)
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", d.cfg.Machine+"-etcd.db"))
	n, err := io.Copy(w, rc)
	if err != nil {
		d.log.Warn("etcd snapshot stream failed", "err", err, "sent", n)
		w.Header().Set(SnapshotErrorTrailer, err.Error())
		return
	}
	d.log.Info("etcd snapshot sent", "bytes", n)
}

// maxRestoreBytes bounds an uploaded snapshot: etcd's largest quota
// (8 GiB) and the digest.
const maxRestoreBytes = 8<<30 + 32

// serveEtcdRestore is POST /v1/etcd/restore: the body is a snapshot,
// restored as the local member's data (see etcdRestore). The answer is a
// RestoreResult, also on failure: 400 for a snapshot that fails
// verification (nothing changed), 409 while another restore runs, 500 for
// a failed step.
func (d *Daemon) serveEtcdRestore(w http.ResponseWriter, r *http.Request) {
	if d.restore == nil {
		http.Error(w, "this machine has no etcd member to restore", http.StatusNotFound)
		return
	}
	select {
	case d.restoring <- struct{}{}:
		defer func() { <-d.restoring }()
	default:
		http.Error(w, "an etcd restore is already running on this machine", http.StatusConflict)
		return
	}
	d.log.Warn("etcd restore from the admin API", "member", d.restore.member.Name)
	res, err := d.restore.Run(r.Context(), http.MaxBytesReader(w, r.Body, maxRestoreBytes))
	code := http.StatusOK
	switch {
	case errors.Is(err, ErrBadSnapshot):
		code = http.StatusBadRequest
	case err != nil:
		code = http.StatusInternalServerError
	}
	writeJSON(w, code, res)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
