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

// NewClient returns a client that trusts caPEM and presents certPEM/keyPEM.
// The agent's certificate names 127.0.0.1, so port forwards verify.
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
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, r)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
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
