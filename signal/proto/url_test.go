package proto

import "testing"

func TestWebSocketURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7880":        "ws://127.0.0.1:7880/ws",
		"http://10.0.0.1:7880":  "ws://10.0.0.1:7880/ws",
		"https://node1.example": "wss://node1.example/ws",
		"ws://h:1/ws":           "ws://h:1/ws",
		"wss://h:1/":            "wss://h:1/ws",
	} {
		if got, err := WebSocketURL(in); err != nil || got != want {
			t.Errorf("WebSocketURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"ftp://h:1", "http://", "ws://%zz"} {
		if _, err := WebSocketURL(bad); err == nil {
			t.Errorf("WebSocketURL(%q) accepted", bad)
		}
	}
}
