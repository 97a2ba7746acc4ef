package installer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Report is what an installer tells the server (POST ReportPath).
type Report struct {
	// Event is one of the Event* constants.
	Event string `json:"event"`
	// Detail is a line for the operator (the disk chosen, an error).
	Detail string `json:"detail,omitempty"`
	// Written and Total: the image's progress, in bytes.
	Written int64 `json:"written,omitempty"`
	Total   int64 `json:"total,omitempty"`
}

// Events of a Report.
const (
	EventStarted   = "started"
	EventWriting   = "writing"
	EventWritten   = "written"
	EventInstalled = "installed"
	EventFailed    = "failed"
)

// Server paths (the boot server serves them; the installer uses them).
const (
	// ReportPath + MAC + "/" + token.
	ReportPath = "/v1/report/"
	// NoCloudPath + MAC + "/" + token + "/" + file: the machine's seed, in
	// the NoCloud-net layout (ds=nocloud;s=<server>/nocloud/<mac>/<token>/).
	NoCloudPath = "/nocloud/"
)

// Client talks to the boot server.
type Client struct {
	P    *Params
	HTTP *http.Client
}

func (c *Client) path(prefix string) string {
	return c.P.URL(prefix + c.P.MAC.String() + "/" + c.P.Token)
}

// Report sends r; a server that does not answer is not an error worth
// stopping an install for, so it is only returned.
func (c *Client) Report(ctx context.Context, r Report) error {
	body, _ := json.Marshal(r)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.path(ReportPath), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("report %s: %s: %s", r.Event, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}

// Get fetches a path of the server (an error for anything but 200).
func (c *Client) Get(ctx context.Context, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		resp.Body.Close()
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, bytes.TrimSpace(b))
	}
	return resp, nil
}

// Seed fetches the machine's NoCloud seed files (names), which must all
// be there.
func (c *Client) Seed(ctx context.Context, names []string) (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, n := range names {
		resp, err := c.Get(ctx, c.path(NoCloudPath)+"/"+n)
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		out[n] = b
	}
	return out, nil
}
