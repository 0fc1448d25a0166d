package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/cascade-sfu/cascade/node"
)

// TestLimitFlags: the limit flags reach the node and signaling options, 0 turning a cap off
// (negative there), and bad values are refused with the flag's name.
func TestLimitFlags(t *testing.T) {
	cfg, err := loadConfig([]string{"--max-rooms", "0", "--max-room-participants", "500", "--max-tracks", "4", "--chat-rate", "0",
		"--chat-burst", "5", "--data-bytes", "1000", "--nack-max-seqs", "32", "--join-rate", "7.5", "--join-burst", "20",
		"--trusted-proxies", "10.0.0.0/8,192.0.2.1"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := node.Limits{Rooms: -1, RoomParticipants: 500, Tracks: 4, Chat: node.Rate{Messages: -1, Burst: 5, Bytes: node.DefaultChatBytes},
		Data: node.Rate{Messages: node.DefaultDataRate, Burst: node.DefaultDataBurst, Bytes: 1000}, NackSeqs: 32}
	if got := cfg.nodeLimits(); got != want {
		t.Errorf("node limits %+v, want %+v", got, want)
	}
	j := cfg.joinLimits()
	if j.Rate != 7.5 || j.Burst != 20 || len(j.TrustedProxies) != 2 || j.TrustedProxies[1] != netip.MustParsePrefix("192.0.2.1/32") {
		t.Errorf("join limits %+v", j)
	}
	off, err := loadConfig([]string{"--join-rate", "0"}, env(nil))
	if err != nil || off.joinLimits().Rate != -1 {
		t.Errorf("--join-rate 0: %+v, %v", off.joinLimits(), err)
	}
	for args, want := range map[string]string{
		"--max-rooms=-1":             "max-rooms",
		"--chat-rate=-2":             "chat-rate",
		"--join-burst=0":             "join-burst",
		"--nack-max-seqs=0":          "nack-max-seqs",
		"--trusted-proxies=a.b.c.d":  "trusted-proxies",
		"--data-burst=0":             "data-burst",
		"--max-room-participants=-5": "max-room-participants",
	} {
		if _, err := loadConfig([]string{args}, env(nil)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error naming %s", args, err, want)
		}
	}
}

// withDefaultLimits is c with the limit flags at their defaults.
func withDefaultLimits(c Config) Config {
	d := defaultConfig()
	c.JoinRate, c.JoinBurst, c.TrustedProxies = d.JoinRate, d.JoinBurst, d.TrustedProxies
	c.MaxRooms, c.MaxRoomParticipants, c.MaxTracks = d.MaxRooms, d.MaxRoomParticipants, d.MaxTracks
	c.ChatRate, c.ChatBurst, c.ChatBytes = d.ChatRate, d.ChatBurst, d.ChatBytes
	c.DataRate, c.DataBurst, c.DataBytes = d.DataRate, d.DataBurst, d.DataBytes
	c.NackMaxSeqs = d.NackMaxSeqs
	return c
}
