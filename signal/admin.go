package signal

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// adminCookie carries the admin token of the /cluster page to the page's own fetches: the page
// is opened once as /cluster?token=<admin token>, then reloads its JSON with the cookie.
const adminCookie = "cascade_admin"

// bearer is the token of an "Authorization: Bearer <token>" header ("" without one).
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) < len("Bearer ") || !strings.EqualFold(h[:len("Bearer ")], "Bearer ") {
		return ""
	}
	return strings.TrimSpace(h[len("Bearer "):])
}

// admin guards an admin endpoint: the request must carry a token with the admin grant in its
// Authorization header (401 without a valid token, 403 with one that lacks the grant).
func (s *Server) admin(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.authorizeAdmin(w, bearer(r)) {
			h.ServeHTTP(w, r)
		}
	})
}

// clusterPage guards /cluster like admin, and also accepts the token as ?token= (for opening the
// page in a browser) and in the cookie the page's first load sets (for the page's own fetches
// of /cluster?format=json).
func (s *Server) clusterPage(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok, fromQuery := bearer(r), false
		if tok == "" {
			if tok = r.URL.Query().Get("token"); tok != "" {
				fromQuery = true
			} else if c, err := r.Cookie(adminCookie); err == nil {
				tok = c.Value
			}
		}
		if !s.authorizeAdmin(w, tok) {
			return
		}
		if fromQuery {
			http.SetCookie(w, &http.Cookie{Name: adminCookie, Value: tok, Path: "/cluster", HttpOnly: true,
				Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
		}
		h.ServeHTTP(w, r)
	})
}

// authorizeAdmin checks an admin token and, when it does not pass, writes the JSON error: 401
// (unauthorized, token_expired) or 403 (forbidden).
func (s *Server) authorizeAdmin(w http.ResponseWriter, tok string) bool {
	err := s.o.Keys.VerifyAdmin(tok)
	if err == nil {
		return true
	}
	if errors.Is(err, auth.ErrNotAdmin) {
		writeJSONError(w, http.StatusForbidden, proto.CodeForbidden, "this endpoint needs a token with the admin grant (cascade token --admin)")
		return false
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="cascade admin"`)
	msg := "this endpoint needs Authorization: Bearer <admin token> (cascade token --admin): " + err.Error()
	writeJSONError(w, http.StatusUnauthorized, codeOf(err), msg)
	return false
}

// writeJSONError answers an HTTP error with the signaling protocol's error object.
func writeJSONError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false) // "<admin token>" reads better than "\u003cadmin token\u003e"
	_ = enc.Encode(proto.Error{Code: code, Message: msg})
}

// deleteGrant checks the token of a WHIP or WHEP resource DELETE, before the resource is looked
// up: signed by this cluster's key pair, whether or not it has expired since (a broadcast may
// outlive its token); an admin token must still be valid. It writes the 401 when it does not pass.
// The caller then checks the grant against the resource with mayDelete.
func (s *Server) deleteGrant(w http.ResponseWriter, r *http.Request) (auth.Grant, bool) {
	tok := bearer(r)
	g, err := s.o.Keys.VerifySignature(tok)
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="cascade"`)
		writeJSONError(w, http.StatusUnauthorized, codeOf(err),
			"stopping a session needs Authorization: Bearer <a token for its room and identity, or an admin token>: "+err.Error())
		return auth.Grant{}, false
	}
	if g.Admin && g.Room == "" {
		return g, s.authorizeAdmin(w, tok)
	}
	if g.Admin && s.o.Keys.VerifyAdmin(tok) != nil {
		g.Admin = false // an expired admin token still proves its room and identity
	}
	return g, true
}

// mayDelete tells whether grant g may stop the session of identity in room: an admin grant, or a
// token for the same room and identity.
func mayDelete(g auth.Grant, room, identity string) bool {
	return g.Admin || (g.Room == room && g.Identity == identity)
}
