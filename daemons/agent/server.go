package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"kubeup.dev/kubeup/daemons/agent/etcdsnapshot"
	"kubeup.dev/kubeup/daemons/httpauth"
)

const (
	// scrapeTimeout bounds a proxied scrape when Prometheus does not say
	// how long it waits (X-Prometheus-Scrape-Timeout-Seconds); what it
	// says is followed up to maxScrapeTimeout.
	scrapeTimeout    = 10 * time.Second
	maxScrapeTimeout = 2 * time.Minute
	journalTimeout   = 30 * time.Second
	// Journal line bounds: enough for a failing unit's story, not enough to
	// stream the whole journal through the agent's memory budget.
	defaultJournalLines = 100
	maxJournalLines     = 10000
)

// AdminGroup is the certificate Organization of kubeup's admin credentials;
// only it may read /v1/status and /v1/journal.
const AdminGroup = httpauth.AdminGroup

// Handler is the agent's HTTPS API:
//
//	GET /healthz           "ok", unauthenticated
//	GET /metrics           Prometheus metrics          client cert or bearer token
//	GET /metrics/<name>    a Scrape endpoint, passed on  client cert or bearer token
//	GET /v1/status         machine status (JSON)        admin client cert
//	GET /v1/journal        a unit's journal (text)      admin client cert
//	GET /v1/config         units' flags, config files,  admin client cert
//	                       modes and owners (JSON)
//	GET /v1/sockets        listening sockets (JSON)     admin client cert
//	PUT /v1/manifests/<n>  write a static pod manifest  admin client cert
//	DELETE /v1/manifests/<n>                             admin client cert
//	POST /v1/units/<unit>/{start,stop,restart}          admin client cert
//	GET /v1/etcd/snapshot  a fresh snapshot (masters)   admin client cert
//	POST /v1/etcd/restore  restore the body (masters)   admin client cert
//	POST /v1/certs/renew   renew every renewable certificate now (JSON)  admin client cert
//	POST /v1/images/import import the body (an image archive) into containerd (JSON)  admin client cert
func (d *Daemon) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok")
	})
	mux.Handle("GET /metrics", d.auth.Metrics(promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		// A few kB of text within the cluster: gzip would cost a fresh
		// compressor (about 1 MB of heap) per scrape for nothing.
		DisableCompression: true,
		Timeout:            30 * time.Second,
	})))
	mux.Handle("GET /metrics/{name}", d.auth.Metrics(http.HandlerFunc(d.serveScrape)))
	mux.Handle("GET /v1/status", d.auth.Admin(http.HandlerFunc(d.serveStatus)))
	mux.Handle("GET /v1/journal", d.auth.Admin(http.HandlerFunc(d.serveJournal)))
	mux.Handle("GET /v1/config", d.auth.Admin(http.HandlerFunc(d.serveConfig)))
	mux.Handle("GET /v1/sockets", d.auth.Admin(http.HandlerFunc(d.serveSockets)))
	mux.Handle("PUT /v1/manifests/{name}", d.auth.Admin(http.HandlerFunc(d.serveManifest)))
	mux.Handle("DELETE /v1/manifests/{name}", d.auth.Admin(http.HandlerFunc(d.serveManifest)))
	mux.Handle("POST /v1/units/{name}/{action}", d.auth.Admin(http.HandlerFunc(d.serveUnitAction)))
	mux.Handle("GET /v1/etcd/snapshot", d.auth.Admin(http.HandlerFunc(d.serveEtcdSnapshot)))
	mux.Handle("POST /v1/etcd/restore", d.auth.Admin(http.HandlerFunc(d.serveEtcdRestore)))
	mux.Handle("POST /v1/etcd/members/{name}/readd", d.auth.Admin(http.HandlerFunc(d.serveEtcdReadd)))
	mux.Handle("POST /v1/certs/renew", d.auth.Admin(http.HandlerFunc(d.serveRenew)))
	mux.Handle("POST /v1/images/import", d.auth.Admin(d.imageImport()))
	return mux
}

// renewTimeout bounds POST /v1/certs/renew: a CSR wait (nodes) and the
// local re-issues.
const renewTimeout = csrTimeout + time.Minute

// serveRenew renews, now, every certificate the agent renews by itself
// (the renewal task does it, so requests and the task's schedule never
// write the same file at once), and answers what it did.
func (d *Daemon) serveRenew(w http.ResponseWriter, r *http.Request) {
	if d.renew == nil {
		http.Error(w, "certificate renewal is not configured on this machine", http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), renewTimeout)
	defer cancel()
	res, err := d.renew.RenewNow(ctx)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	if res == nil {
		res = []CertificateRenewal{}
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(res)
}

// serveScrape fetches a loopback metrics endpoint and passes its answer on,
// content negotiation included, so Prometheus reaches plain-HTTP
// loopback-only endpoints (containerd, kube-proxy) over the agent's TLS.
func (d *Daemon) serveScrape(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	target, ok := d.cfg.Scrape[name]
	if !ok {
		http.Error(w, fmt.Sprintf("no scrape target %q (have %s)", name, strings.Join(sortedKeys(d.cfg.Scrape), ", ")), http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeoutOf(r))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	for _, h := range []string{"Accept", "X-Prometheus-Scrape-Timeout-Seconds"} {
		if v := r.Header.Get(h); v != "" {
			req.Header.Set(h, v)
		}
	}
	resp, err := d.scrape.Do(req)
	if err != nil {
		http.Error(w, fmt.Sprintf("scrape %s: %v", name, unwrapURLError(err)), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		http.Error(w, fmt.Sprintf("scrape %s: %s: %s", name, resp.Status, bytes.TrimSpace(body)), http.StatusBadGateway)
		return
	}
	if ct := resp.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	io.Copy(w, resp.Body)
}

// scrapeTimeoutOf is how long a proxied scrape may take: as long as the
// scraper waits (a busy containerd under TCG took more than 10 s to
// render its per-container metrics, so a fixed 10 s answered 502 to a
// Prometheus that would have waited 45), else scrapeTimeout.
func scrapeTimeoutOf(r *http.Request) time.Duration {
	secs, err := strconv.ParseFloat(r.Header.Get("X-Prometheus-Scrape-Timeout-Seconds"), 64)
	if err != nil || secs <= 0 || math.IsNaN(secs) {
		return scrapeTimeout
	}
	return min(time.Duration(secs*float64(time.Second)), maxScrapeTimeout)
}

// Status is GET /v1/status.
type Status struct {
	Cluster       string            `json:"cluster"`
	Machine       string            `json:"machine"`
	Role          string            `json:"role"`
	MachineIP     string            `json:"machineIP,omitempty"`
	UptimeSeconds int64             `json:"uptimeSeconds,omitempty"`
	AgentStarted  time.Time         `json:"agentStarted"`
	Units         []UnitStatus      `json:"units"`
	UnitsError    string            `json:"unitsError,omitempty"`
	PodNetwork    PodNetworkStatus  `json:"podNetwork"`
	Certificates  []CertificateInfo `json:"certificates"`
	Tasks         []TaskStatus      `json:"tasks"`
	// Logs is log forwarding, when on.
	Logs *LogStatus `json:"logs,omitempty"`
	// Etcd is the last etcd health poll (masters).
	Etcd []EtcdMemberStatus `json:"etcd,omitempty"`
	// EtcdSnapshots is the scheduled snapshots' status file (masters).
	EtcdSnapshots *etcdsnapshot.Status `json:"etcdSnapshots,omitempty"`
}

// Status collects the machine's status.
func (d *Daemon) Status(ctx context.Context) Status {
	st := Status{
		Cluster: d.cfg.Cluster, Machine: d.cfg.Machine, Role: d.cfg.Role, MachineIP: d.cfg.MachineIP,
		AgentStarted: d.started.UTC(),
		PodNetwork:   d.podnet.Status(),
		Tasks:        d.sup.Statuses(),
	}
	if d.logs != nil {
		st.Logs = d.logs.status()
	}
	if d.etcd != nil {
		st.Etcd = d.etcd.Status()
	}
	if e := d.cfg.Etcd; e != nil && e.Snapshots != nil {
		if s, err := etcdsnapshot.ReadStatus(e.Snapshots.Dir); err == nil {
			st.EtcdSnapshots = &s
		}
	}
	if up, err := d.uptime(); err == nil {
		st.UptimeSeconds = int64(up.Seconds())
	}
	ctx, cancel := context.WithTimeout(ctx, unitReadTimeout)
	defer cancel()
	units, err := d.units.Units(ctx, d.cfg.Units)
	if err != nil {
		st.UnitsError = err.Error()
		for _, u := range d.cfg.Units {
			units = append(units, UnitStatus{Name: u})
		}
	}
	st.Units = units
	st.Certificates, _ = d.certs.snapshot()
	if st.Certificates == nil {
		st.Certificates = []CertificateInfo{}
	}
	return st
}

func (d *Daemon) serveStatus(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(d.Status(r.Context()))
}

// JournalFunc runs journalctl with args, writing its output to w.
type JournalFunc func(ctx context.Context, args []string, w io.Writer) error

func execJournal(ctx context.Context, args []string, w io.Writer) error {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "journalctl", args...)
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %w: %s", strings.Join(cmd.Args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return nil
}

// JournalArgs are journalctl's arguments for GET /v1/journal: unit must be
// one of the configured units, lines 1..maxJournalLines (default 100),
// since (optional) RFC 3339.
func (d *Daemon) JournalArgs(unit, lines, since string) ([]string, error) {
	if !slices.Contains(d.cfg.Units, unit) {
		return nil, fmt.Errorf("unit %q is not one of this machine's units (%s)", unit, strings.Join(d.cfg.Units, ", "))
	}
	n := defaultJournalLines
	if lines != "" {
		v, err := strconv.Atoi(lines)
		if err != nil || v < 1 || v > maxJournalLines {
			return nil, fmt.Errorf("lines=%q: want a number from 1 to %d", lines, maxJournalLines)
		}
		n = v
	}
	var args []string
	for _, u := range withTimerServices([]string{unit}) {
		args = append(args, "-u", u) // a timer's journal is its service's
	}
	args = append(args, "-n", strconv.Itoa(n), "-o", "short-iso", "--no-pager")
	if since != "" {
		t, err := time.Parse(time.RFC3339, since)
		if err != nil {
			return nil, fmt.Errorf("since=%q: want RFC 3339, e.g. 2006-01-02T15:04:05Z", since)
		}
		// "@<unix seconds>" is journalctl's zone-free timestamp form.
		args = append(args, "--since=@"+strconv.FormatInt(t.Unix(), 10))
	}
	return args, nil
}

func (d *Daemon) serveJournal(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	args, err := d.JournalArgs(q.Get("unit"), q.Get("lines"), q.Get("since"))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), journalTimeout)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	cw := &countingWriter{w: w}
	if err := d.journal(ctx, args, cw); err != nil {
		if cw.n == 0 {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		// Output already started: the status is sent; say so at the end.
		fmt.Fprintf(w, "\n-- journal truncated: %v --\n", err)
	}
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// machineUptime reads /proc/uptime.
func machineUptime() (time.Duration, error) {
	data, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(data))
	if len(f) == 0 {
		return 0, errors.New("/proc/uptime: empty")
	}
	secs, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("/proc/uptime: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// unwrapURLError drops net/http's `Get "URL":` prefix where the message
// names the target already.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
