package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client talks to an agent's admin API (kubeup on the host, through the
// machine's port forward) with an administrator's client certificate.
type Client struct {
	// Base is the agent's URL, e.g. https://127.0.0.1:40123.
	Base string
	HTTP *http.Client
}

// ServerName is the name every agent's serving certificate carries
// (provision/pki, components.NodeCredentials), whatever address it is
// reached at (a port forward on 127.0.0.1 locally, the machine's own
// address on metal).
const ServerName = "kubeup-agent"

// NewClient returns a client that trusts caPEM and presents
// certPEM/keyPEM; it checks the agent's certificate for the address in
// base, or for VerifyName's.
func NewClient(base string, caPEM, certPEM, keyPEM []byte) (*Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("agent client: no CA certificate in the given PEM")
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("agent client certificate: %w", err)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	return &Client{Base: strings.TrimSuffix(base, "/"), HTTP: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// VerifyName makes the client check the agent's certificate for name
// (ServerName) instead of the address it connects to.
func (c *Client) VerifyName(name string) {
	if tr, ok := c.HTTP.Transport.(*http.Transport); ok {
		tr.TLSClientConfig.ServerName = name
	}
}

// Status is GET /v1/status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	body, err := c.do(ctx, http.MethodGet, "/v1/status", nil)
	if err != nil {
		return nil, err
	}
	var st Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("agent status: %w", err)
	}
	return &st, nil
}

// Journal returns the last lines of a unit's journal.
func (c *Client) Journal(ctx context.Context, unit string, lines int) (string, error) {
	q := url.Values{"unit": {unit}, "lines": {strconv.Itoa(lines)}}
	body, err := c.do(ctx, http.MethodGet, "/v1/journal?"+q.Encode(), nil)
	return string(body), err
}

// Config is GET /v1/config: the units' flags and the configuration files,
// modes and owners the CIS checks read.
func (c *Client) Config(ctx context.Context) (*MachineConfig, error) {
	body, err := c.do(ctx, http.MethodGet, "/v1/config", nil)
	if err != nil {
		return nil, err
	}
	var mc MachineConfig
	if err := json.Unmarshal(body, &mc); err != nil {
		return nil, fmt.Errorf("agent config report: %w", err)
	}
	return &mc, nil
}

// Sockets is GET /v1/sockets: the machine's listening sockets.
func (c *Client) Sockets(ctx context.Context) ([]Socket, error) {
	body, err := c.do(ctx, http.MethodGet, "/v1/sockets", nil)
	if err != nil {
		return nil, err
	}
	var socks []Socket
	if err := json.Unmarshal(body, &socks); err != nil {
		return nil, fmt.Errorf("agent sockets: %w", err)
	}
	return socks, nil
}

// PutManifest writes a static pod manifest into the kubelet's directory.
func (c *Client) PutManifest(ctx context.Context, name string, pod []byte) error {
	_, err := c.do(ctx, http.MethodPut, "/v1/manifests/"+url.PathEscape(name), pod)
	return err
}

// DeleteManifest removes a static pod manifest.
func (c *Client) DeleteManifest(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/manifests/"+url.PathEscape(name), nil)
	return err
}

// StartUnit, StopUnit and RestartUnit run a systemd job on one of the
// machine's units and wait for it (a start: until the unit is ready).
func (c *Client) StartUnit(ctx context.Context, unit string) error {
	return c.unitAction(ctx, unit, "start")
}

func (c *Client) StopUnit(ctx context.Context, unit string) error {
	return c.unitAction(ctx, unit, "stop")
}

func (c *Client) RestartUnit(ctx context.Context, unit string) error {
	return c.unitAction(ctx, unit, "restart")
}

func (c *Client) unitAction(ctx context.Context, unit, action string) error {
	_, err := c.doWith(ctx, c.long(), http.MethodPost, "/v1/units/"+url.PathEscape(unit)+"/"+action, nil)
	return err
}

// long is the client without the overall timeout, for calls whose length
// is the server's business (snapshots, restores, unit starts): their
// contexts bound them.
func (c *Client) long() *http.Client {
	return &http.Client{Transport: c.HTTP.Transport}
}

// EtcdSnapshot streams a fresh snapshot of the machine's etcd member. A
// failure after the stream started is an error at its end (the agent's
// trailer), and a truncated stream fails the receiver's verification.
func (c *Client) EtcdSnapshot(ctx context.Context) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Base+"/v1/etcd/snapshot", nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.long().Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent GET /v1/etcd/snapshot: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("agent GET /v1/etcd/snapshot: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	return &snapshotBody{resp: resp}, nil
}

type snapshotBody struct{ resp *http.Response }

func (b *snapshotBody) Read(p []byte) (int, error) {
	n, err := b.resp.Body.Read(p)
	if err == io.EOF {
		if msg := b.resp.Trailer.Get(SnapshotErrorTrailer); msg != "" {
			return n, fmt.Errorf("agent's snapshot stream failed: %s", msg)
		}
	}
	return n, err
}

func (b *snapshotBody) Close() error { return b.resp.Body.Close() }

// RestoreEtcd uploads a snapshot for the machine's etcd member to be
// restored from. The result lists the steps done, also when one failed
// (then with an error too); it is nil only when the agent gave none.
func (c *Client) RestoreEtcd(ctx context.Context, snapshot io.Reader, size int64) (*RestoreResult, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+"/v1/etcd/restore", snapshot)
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.long().Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent POST /v1/etcd/restore: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("agent POST /v1/etcd/restore: %w", err)
	}
	var res RestoreResult
	if json.Unmarshal(data, &res) != nil || len(res.Steps) == 0 {
		if resp.StatusCode/100 == 2 {
			return nil, fmt.Errorf("agent POST /v1/etcd/restore: unexpected answer %.200q", data)
		}
		return nil, fmt.Errorf("agent POST /v1/etcd/restore: %s: %s", resp.Status, bytes.TrimSpace(data))
	}
	if resp.StatusCode/100 != 2 {
		return &res, fmt.Errorf("agent POST /v1/etcd/restore: %s: %s", resp.Status, res.Error)
	}
	return &res, nil
}

// ImportImages streams r, an OCI or docker image archive (a tar) of size
// bytes (-1 if unknown), into the machine's containerd, where the kubelet
// sees its images; pin exempts them from the kubelet's image garbage
// collection. Only ctx bounds the call: a large archive takes as long as
// its upload. r is not closed.
func (c *Client) ImportImages(ctx context.Context, r io.Reader, size int64, pin bool) (*ImportResult, error) {
	path := "/v1/images/import"
	if pin {
		path += "?pin=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Base+path, io.NopCloser(r))
	if err != nil {
		return nil, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/x-tar")
	resp, err := c.long().Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		return nil, fmt.Errorf("agent POST %s: %w", path, err)
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("agent POST %s: %s: %s", path, resp.Status, bytes.TrimSpace(data))
	}
	var res ImportResult
	if err := json.Unmarshal(data, &res); err != nil {
		return nil, fmt.Errorf("agent POST %s: unexpected answer %.200q", path, data)
	}
	return &res, nil
}

// ReaddEtcdMember asks a master's agent to remove the etcd member called
// name and add a new one at peerURL (the machine that replaces it joins
// that), and returns the member list after.
func (c *Client) ReaddEtcdMember(ctx context.Context, name, peerURL string) ([]EtcdMemberInfo, error) {
	body, err := json.Marshal(EtcdReaddRequest{PeerURL: peerURL})
	if err != nil {
		return nil, err
	}
	out, err := c.do(ctx, http.MethodPost, "/v1/etcd/members/"+url.PathEscape(name)+"/readd", body)
	if err != nil {
		return nil, err
	}
	var members []EtcdMemberInfo
	if err := json.Unmarshal(out, &members); err != nil {
		return nil, fmt.Errorf("agent etcd member re-add: %w", err)
	}
	return members, nil
}

// RenewCertificates asks the agent to renew, now, every certificate it
// renews by itself, and returns what it did.
func (c *Client) RenewCertificates(ctx context.Context) ([]CertificateRenewal, error) {
	// A node's renewal waits for its CSRs to be signed: longer than the
	// other calls may take.
	long, hc := *c, *c.HTTP
	hc.Timeout = renewTimeout + 30*time.Second
	long.HTTP = &hc
	body, err := long.do(ctx, http.MethodPost, "/v1/certs/renew", nil)
	if err != nil {
		return nil, err
	}
	var res []CertificateRenewal
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, fmt.Errorf("agent renewal: %w", err)
	}
	return res, nil
}

func (c *Client) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	return c.doWith(ctx, c.HTTP, method, path, body)
}

func (c *Client) doWith(ctx context.Context, hc *http.Client, method, path string, body []byte) ([]byte, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, r)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("agent %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("agent %s %s: %s: %s", method, path, resp.Status, bytes.TrimSpace(data))
	}
	return data, nil
}
