package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"
)

// GetJSON fetches url (an http:// URL, typically a node's /stats on another host) over a
// connection made on h, and decodes the JSON body into v. A status other than 200 is an error;
// the request gives up after 2 s, so it can be polled with [Eventually].
func (h *Host) GetJSON(url string, v any) error {
	return h.GetJSONAuth(url, "", v)
}

// GetJSONAuth is GetJSON with Authorization: Bearer token (unless token is empty): a node's
// /stats and /cluster need an admin token.
func (h *Host) GetJSONAuth(url, token string, v any) error {
	client := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (conn net.Conn, err error) {
			err = h.Do(func() error { conn, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return conn, err
		}}}
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
