package harness

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestGetJSON checks that GetJSON reaches a server on another host over either family, decodes
// its body, turns a status other than 200 into an error, and fails from a host that is cut.
func TestGetJSON(t *testing.T) {
	lab := New(t)
	a, b := lab.Host("a"), lab.Host("b")
	var ln net.Listener
	if err := b.Do(func() (err error) { ln, err = net.Listen("tcp", ":8080"); return err }); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"n": 7}`)) })
	mux.HandleFunc("/admin", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer tok" {
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		_, _ = w.Write([]byte(`{"n": 8}`))
	})
	srv := &http.Server{Handler: mux}
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close(); <-done })

	for _, addr := range []string{b.Addr().String(), "[" + b.Addr6().String() + "]"} {
		var v struct{ N int }
		if err := a.GetJSON("http://"+addr+":8080/ok", &v); err != nil || v.N != 7 {
			t.Fatalf("%s: got %+v (%v), want n 7", addr, v, err)
		}
	}
	var auth struct{ N int }
	if err := a.GetJSONAuth("http://"+b.Addr().String()+":8080/admin", "tok", &auth); err != nil || auth.N != 8 {
		t.Fatalf("GetJSONAuth: got %+v (%v), want n 8", auth, err)
	}
	if err := a.GetJSON("http://"+b.Addr().String()+":8080/admin", &auth); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("GetJSON without a token: %v, want a 401 error", err)
	}
	var v struct{}
	if err := a.GetJSON("http://"+b.Addr().String()+":8080/missing", &v); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("a 404 gave %v", err)
	}
	a.Cut()
	start := time.Now()
	if err := a.GetJSON("http://"+b.Addr().String()+":8080/ok", &v); err == nil {
		t.Fatal("GetJSON from a cut host succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("GetJSON from a cut host took %v", d)
	}
}
