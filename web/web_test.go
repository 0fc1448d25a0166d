package web_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cascade-sfu/cascade/web"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestHandlerServesThePage(t *testing.T) {
	h := web.Handler()
	for _, c := range []struct {
		path, contentType, contains string
	}{
		{"/", "text/html; charset=utf-8", `<script type="module" src="app.js">`},
		{"/?room=a&identity=b&autojoin=1", "text/html; charset=utf-8", "<title>Cascade</title>"},
		{"/cascade.js", "text/javascript; charset=utf-8", "export { CascadeClient, CascadeError }"},
		{"/cascade/client.js", "text/javascript; charset=utf-8", "export class CascadeClient"},
		{"/app.js", "text/javascript; charset=utf-8", "window.cascadeApp"},
		{"/style.css", "text/css; charset=utf-8", ".tiles"},
	} {
		res := get(t, h, http.MethodGet, c.path)
		body, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: status %d", c.path, res.StatusCode)
			continue
		}
		if got := res.Header.Get("Content-Type"); got != c.contentType {
			t.Errorf("GET %s: Content-Type %q, want %q", c.path, got, c.contentType)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q", c.path, got)
		}
		if !strings.Contains(string(body), c.contains) {
			t.Errorf("GET %s: body lacks %q", c.path, c.contains)
		}
	}
	if res := get(t, h, http.MethodGet, "/missing.js"); res.StatusCode != http.StatusNotFound {
		t.Errorf("GET /missing.js: status %d, want 404", res.StatusCode)
	}
	if res := get(t, h, http.MethodPost, "/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: status %d, want 405", res.StatusCode)
	}
	if res := get(t, h, http.MethodHead, "/cascade.js"); res.StatusCode != http.StatusOK {
		t.Errorf("HEAD /cascade.js: status %d", res.StatusCode)
	}
}
