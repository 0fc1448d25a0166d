package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/cascade-sfu/cascade/signal/client"
	"github.com/pion/webrtc/v4"
)

func TestRunToken(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run([]string{"token", "--room", "demo", "--identity", "dev", "--publish"}, env(nil), &stdout, &stderr)
	if code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if !strings.Contains(stderr.String(), "development key") {
		t.Errorf("stderr %q does not mention the development key", stderr.String())
	}
	g, err := auth.DevKeys().Verify(strings.TrimSpace(stdout.String()))
	if err != nil {
		t.Fatal(err)
	}
	if want := (auth.Grant{Room: "demo", Identity: "dev", Publish: true}); g != want {
		t.Errorf("grant %+v, want %+v", g, want)
	}

	stdout.Reset()
	stderr.Reset()
	keys := auth.Keys{Key: "k1", Secret: "a-secret-of-16-bytes"}
	getenv := env(map[string]string{"CASCADE_API_KEY": keys.Key, "CASCADE_API_SECRET": keys.Secret})
	if code := run([]string{"token", "--room", "r", "--identity", "i", "--subscribe"}, getenv, &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	if stderr.Len() != 0 {
		t.Errorf("unexpected stderr %q", stderr.String())
	}
	if _, err := keys.Verify(strings.TrimSpace(stdout.String())); err != nil {
		t.Errorf("token from env keys: %v", err)
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tt := range []struct {
		args []string
		code int
		want string // in stderr
	}{
		{args: nil, code: exitUsage, want: "Usage"},
		{args: []string{"frobnicate"}, code: exitUsage, want: "unknown command"},
		{args: []string{"bots", "--subscribers", "0"}, code: exitUsage, want: "at least 1"},
		{args: []string{"node", "--check", "--relay-fanout", "0"}, code: exitUsage, want: "relay-fanout"},
		{args: []string{"bots", "--no-such-flag"}, code: exitUsage, want: "no-such-flag"},
		{args: []string{"bots", "--networks", "udp6,quic"}, code: exitUsage, want: `"quic" is none of udp4, tcp4, udp6, tcp6`},
		{args: []string{"bots", "--networks", "udp6,udp6"}, code: exitUsage, want: "udp6 twice"},
		{args: []string{"bots", "--url", "ws://127.0.0.1:1", "--subscribers", "1", "--quiet", "--join-timeout", "2s"}, code: exitError, want: "failed to join"},
		{args: []string{"token", "--identity", "i"}, code: exitUsage, want: "--room is required"},
		{args: []string{"token", "-h"}, code: exitOK, want: "-identity"},
		{args: []string{"node", "--log-level", "loud"}, code: exitUsage, want: "log-level"},
		{args: []string{"node", "-h"}, code: exitOK, want: "-udp-port"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(tt.args, env(nil), &stdout, &stderr); code != tt.code || !strings.Contains(stderr.String(), tt.want) {
			t.Errorf("run(%q) = %d, stderr %q; want %d and %q", tt.args, code, stderr.String(), tt.code, tt.want)
		}
	}
}

// TestParseNetworks: --networks maps onto the client's candidate networks, in order; empty is
// the client's default (nil).
func TestParseNetworks(t *testing.T) {
	for in, want := range map[string][]webrtc.NetworkType{
		"":               nil,
		"udp6,tcp6":      client.IPv6Only,
		" tcp4 ":         client.TCPOnly,
		"udp4,tcp4":      client.DefaultNetworkTypes,
		"tcp6,udp4,udp6": {webrtc.NetworkTypeTCP6, webrtc.NetworkTypeUDP4, webrtc.NetworkTypeUDP6},
	} {
		got, err := parseNetworks(in)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("parseNetworks(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"udp", "udp4,", "UDP6", "udp4,udp4"} {
		if got, err := parseNetworks(in); err == nil {
			t.Errorf("parseNetworks(%q) = %v, want an error", in, got)
		}
	}
}

// TestTokenAdmin: `cascade token --admin` needs no room or identity and mints the admin grant.
func TestTokenAdmin(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := run([]string{"token", "--admin", "--ttl", "5m"}, env(nil), &stdout, &stderr); code != exitOK {
		t.Fatalf("exit %d, stderr %q", code, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	if err := auth.DevKeys().VerifyAdmin(tok); err != nil {
		t.Errorf("admin token: %v", err)
	}
	if _, err := auth.DevKeys().Verify(tok); err == nil {
		t.Errorf("an admin token without a room verified as a join token")
	}
}
