package proto

import (
	"fmt"
	"net/url"
	"strings"
)

// WebSocketURL turns a node address into its signaling URL: it accepts ws(s)://host:port[/ws],
// http(s)://host:port (a node's HTTP URL) and host:port.
func WebSocketURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "ws://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("bad node URL %q: %w", s, err)
	}
	switch u.Scheme {
	case "http", "ws":
		u.Scheme = "ws"
	case "https", "wss":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("bad node URL %q: scheme must be ws, wss, http or https", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("bad node URL %q: no host", s)
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = "/ws"
	}
	return u.String(), nil
}
