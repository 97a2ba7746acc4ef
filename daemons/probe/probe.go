package probe

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"kubeup.dev/kubeup/components/agentconfig"
)

// Options configure Run.
type Options struct {
	// URL is http(s)://... (ready when it answers 200) or unix:///path (ready
	// when the socket answers gRPC's health check; see grpcHealth).
	URL string
	// CACert verifies the server; without it the system roots do.
	CACert string
	// Cert and Key are a client certificate to present.
	Cert, Key string
	// NodeOf, instead of a URL, is an agent configuration file: the probe
	// is ready when the Node of that machine exists with an address, read
	// with the agent's kubeconfig. kube-proxy waits for it: started before
	// its Node, kube-proxy runs without node IPs and exits on purpose as
	// soon as the Node appears with them.
	NodeOf string
	// Timeout bounds the whole probe, Interval is the pause between tries.
	Timeout, Interval time.Duration
	// Stall, when set, gives up early on a start that makes no progress:
	// after Stall with the same answer every time (a slow start changes
	// its answer as it goes: the API server's /readyz lists fewer failing
	// checks, a socket starts accepting). Timeout still bounds the whole.
	Stall time.Duration
	// MainPID is the process the probe waits on (systemd sets $MAINPID for
	// ExecStartPost): when it exits, so does the probe, at once, instead of
	// polling a dead server until Timeout while systemd waits for the
	// probe before it may restart the unit.
	MainPID int
	// Progress, when set, is told each new answer of a start that is not
	// ready yet (the first failure and every change since), with the time
	// since the probe began: what a slow start spent its time on, in the
	// unit's journal.
	Progress func(elapsed time.Duration, answer error)
}

// ErrMainExited: the unit's main process exited before it was ready.
var ErrMainExited = errors.New("main process exited")

// ErrStalled: the answer did not change for Options.Stall.
var ErrStalled = errors.New("no progress")

// DefaultInterval is the pause between tries.
const DefaultInterval = 2 * time.Second

// probeAttemptTimeout bounds one try, so a hung server costs one interval.
const probeAttemptTimeout = 5 * time.Second

// Run polls opts.URL (or the Node of opts.NodeOf) until it is ready or
// opts.Timeout passes; the error then carries the last answer (status and
// start of the body) or failure.
func Run(ctx context.Context, opts Options) error {
	var check func(context.Context) error
	what, err := opts.URL, error(nil)
	if opts.NodeOf != "" {
		check, what, err = newNodeCheck(opts.NodeOf)
	} else {
		check, err = newProbeCheck(opts)
	}
	if err != nil {
		return err
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, opts.Timeout)
		defer cancel()
	}
	start := time.Now()
	tick := time.NewTicker(opts.Interval)
	defer tick.Stop()
	var last error
	changed := start // when the answer last changed
	for {
		actx, cancel := context.WithTimeout(ctx, probeAttemptTimeout)
		err := check(actx)
		cancel()
		if err == nil {
			return nil
		}
		if opts.MainPID > 0 && !processAlive(opts.MainPID) {
			return fmt.Errorf("probe %s: %w (pid %d) after %s, before it was ready: %w", what, ErrMainExited, opts.MainPID, time.Since(start).Round(time.Second), err)
		}
		// A try cut short by the overall timeout says less than the one before.
		if last == nil || ctx.Err() == nil {
			if last == nil || err.Error() != last.Error() {
				changed = time.Now()
				if opts.Progress != nil {
					opts.Progress(changed.Sub(start), err)
				}
			}
			last = err
		}
		if opts.Stall > 0 && time.Since(changed) >= opts.Stall {
			return fmt.Errorf("probe %s: %w: the same answer for %s (%s since start): %w", what, ErrStalled, opts.Stall, time.Since(start).Round(time.Second), last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe %s: not ready after %s: %w", what, time.Since(start).Round(time.Second), last)
		case <-tick.C:
		}
	}
}

// processAlive says whether pid is a running process (a zombie, exited
// but not yet reaped by systemd, counts as gone).
func processAlive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses, which may itself
	// contain spaces or parentheses.
	i := strings.LastIndexByte(string(data), ')')
	return i < 0 || i+2 >= len(data) || data[i+2] != 'Z'
}

// newProbeCheck returns one try of the probe: nil when ready.
func newProbeCheck(opts Options) (func(context.Context) error, error) {
	u, err := url.Parse(opts.URL)
	if err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	switch u.Scheme {
	case "unix":
		if u.Path == "" {
			return nil, fmt.Errorf("probe %s: want unix:///absolute/path", opts.URL)
		}
		return func(ctx context.Context) error { return grpcHealth(ctx, u.Path) }, nil
	case "http", "https":
	default:
		return nil, fmt.Errorf("probe %s: scheme must be http, https or unix", opts.URL)
	}
	tlsConfig, err := probeTLS(opts)
	if err != nil {
		return nil, err
	}
	// One connection for every try (keep-alive): a TLS handshake per try
	// costs the server more than answering, and a server that is starting
	// under load needs its CPU for itself.
	client := &http.Client{Transport: &http.Transport{
		Proxy:           nil, // probes are local; a proxy in the environment must not intercept them
		TLSClientConfig: tlsConfig,
		MaxIdleConns:    1,
		IdleConnTimeout: time.Minute,
	}}
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, opts.URL, nil)
		if err != nil {
			return err
		}
		resp, err := client.Do(req)
		if err != nil {
			return unwrapURLError(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		return fmt.Errorf("last response %s: %s", resp.Status, failingChecks(string(body)))
	}, nil
}

func probeTLS(opts Options) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if opts.CACert != "" {
		pem, err := os.ReadFile(opts.CACert)
		if err != nil {
			return nil, fmt.Errorf("probe: --cacert: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("probe: --cacert %s: no PEM certificate", opts.CACert)
		}
	}
	if (opts.Cert == "") != (opts.Key == "") {
		return nil, errors.New("probe: --cert and --key go together")
	}
	if opts.Cert != "" {
		// Loaded per handshake: the probe outlives rotations only in theory,
		// but a missing file at start is then a retry, not a failure.
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(opts.Cert, opts.Key)
			if err != nil {
				return nil, fmt.Errorf("client certificate: %w", err)
			}
			return &c, nil
		}
	}
	return cfg, nil
}

// failingChecks keeps what a health answer says is wrong: the "[-]" lines
// of a Kubernetes /readyz or /healthz answer (its "[+]" lines only grow as
// a start progresses), or the start of any other body.
func failingChecks(body string) string {
	var bad []string
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "[-]") {
			bad = append(bad, strings.TrimSpace(l))
		}
	}
	if len(bad) > 0 {
		return strings.Join(bad, "; ")
	}
	body = strings.TrimSpace(body)
	if len(body) > 512 {
		body = body[:512] + "..."
	}
	return body
}

// unwrapURLError drops net/http's `Get "URL":` prefix: Run names the URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// newNodeCheck returns one try of the Node probe of the agent configuration
// at path, and what it waits for ("node NAME").
func newNodeCheck(path string) (func(context.Context) error, string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, "", fmt.Errorf("probe: agent configuration: %w", err)
	}
	var cfg agentconfig.Config
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		return nil, "", fmt.Errorf("probe: agent configuration %s: %w", path, err)
	}
	if cfg.Machine == "" || cfg.Kubeconfig == "" {
		return nil, "", fmt.Errorf("probe: agent configuration %s: machine and kubeconfig are required", path)
	}
	var (
		host   string
		client *http.Client
	)
	return func(ctx context.Context) error {
		if client == nil {
			// The kubeconfig names certificate files; build the client on
			// the first try that finds them.
			rc, err := clientcmd.BuildConfigFromFlags("", cfg.Kubeconfig)
			if err != nil {
				return err
			}
			rc.Timeout = probeAttemptTimeout
			c, err := rest.HTTPClientFor(rc)
			if err != nil {
				return err
			}
			host, client = strings.TrimSuffix(rc.Host, "/"), c
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, host+"/api/v1/nodes/"+url.PathEscape(cfg.Machine), nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", "application/json")
		req.Header.Set("User-Agent", "kubeup-probe")
		resp, err := client.Do(req)
		if err != nil {
			return unwrapURLError(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			var st struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(body, &st) == nil && st.Message != "" {
				return fmt.Errorf("%s: %s", resp.Status, st.Message)
			}
			return fmt.Errorf("%s", resp.Status)
		}
		// The part of a v1 Node this needs.
		var node struct {
			Status struct {
				Addresses []struct {
					Address string `json:"address"`
				} `json:"addresses"`
			} `json:"status"`
		}
		if err := json.Unmarshal(body, &node); err != nil {
			return fmt.Errorf("node %s: %w", cfg.Machine, err)
		}
		if len(node.Status.Addresses) == 0 {
			return fmt.Errorf("node %s has no address yet", cfg.Machine)
		}
		return nil
	}, "node " + cfg.Machine, nil
}
