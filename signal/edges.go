package signal

import (
	"fmt"
	"net/http"
	"time"

	"github.com/coder/websocket"
)

// DefaultJoinDeadline is how long a WebSocket may stay open without joining.
const DefaultJoinDeadline = 10 * time.Second

// CloseJoinDeadline is the WebSocket close code of a connection that did not join in time.
const CloseJoinDeadline = websocket.StatusCode(4008)

// joinDeadline is the configured join deadline (0: none).
func (s *Server) joinDeadline() time.Duration {
	switch d := s.o.JoinDeadline; {
	case d == 0:
		return DefaultJoinDeadline
	case d < 0:
		return 0
	default:
		return d
	}
}

// markJoined records that sess has joined: the join deadline no longer applies to it.
func (s *Server) markJoined(sess *session) {
	s.mu.Lock()
	if _, ok := s.sessions[sess]; ok {
		s.sessions[sess] = true
	}
	s.mu.Unlock()
}

// enforceJoinDeadline closes sess, with CloseJoinDeadline, unless it has joined.
func (s *Server) enforceJoinDeadline(sess *session, d time.Duration) {
	s.mu.Lock()
	joined, open := s.sessions[sess]
	s.mu.Unlock()
	if open && !joined {
		s.log.Debug("closing a signaling connection that did not join in time", "deadline", d)
		sess.closeWith(CloseJoinDeadline, fmt.Sprintf("join deadline: no join within %v", d), true)
	}
}

// HTTPTimeouts bound the node's HTTP server. They apply to plain requests (WHIP and WHEP
// included); a WebSocket, once upgraded, is free of them (its pings and write timeout guard it).
type HTTPTimeouts struct {
	ReadHeader time.Duration // reading a request's headers
	Read       time.Duration // reading a whole request, body included
	Write      time.Duration // from the end of the headers to the end of the response
	Idle       time.Duration // a keep-alive connection waiting for its next request
}

// DefaultHTTPTimeouts are the node's HTTP timeouts. Write leaves room for a WHIP or WHEP answer
// (ICE gathering) and a 30-second CPU profile.
func DefaultHTTPTimeouts() HTTPTimeouts {
	return HTTPTimeouts{ReadHeader: 10 * time.Second, Read: 30 * time.Second, Write: 60 * time.Second, Idle: 120 * time.Second}
}

// Server returns an HTTP server for h with the timeouts t.
func (t HTTPTimeouts) Server(h http.Handler) *http.Server {
	return &http.Server{Handler: h, ReadHeaderTimeout: t.ReadHeader, ReadTimeout: t.Read, WriteTimeout: t.Write,
		IdleTimeout: t.Idle, MaxHeaderBytes: maxHeaderBytes}
}

// maxHeaderBytes caps a request's headers (a token is at most auth.MaxTokenLen).
const maxHeaderBytes = 64 << 10
