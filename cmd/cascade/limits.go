package main

import (
	"flag"
	"fmt"

	"github.com/cascade-sfu/cascade/node"
	"github.com/cascade-sfu/cascade/signal"
)

// limitFlags adds the flags of the node's limits (PROTOCOL.md, "Limits") to fs, bound to c.
func limitFlags(fs *flag.FlagSet, c *Config) {
	fs.Float64Var(&c.JoinRate, "join-rate", c.JoinRate, "joins per second from one client address (an IPv6 /64): /ws joins and WHIP/WHEP POSTs (0: no limit)")
	fs.IntVar(&c.JoinBurst, "join-burst", c.JoinBurst, "joins one client address may make at once, past --join-rate (a town hall behind one NAT)")
	fs.StringVar(&c.TrustedProxies, "trusted-proxies", c.TrustedProxies, "comma-separated CIDRs or addresses of reverse proxies whose X-Forwarded-For / X-Real-IP name the client (empty: the socket's peer is the client)")
	fs.IntVar(&c.MaxRooms, "max-rooms", c.MaxRooms, "rooms this node serves at a time (0: no limit)")
	fs.IntVar(&c.MaxRoomParticipants, "max-room-participants", c.MaxRoomParticipants, "participants of one room, as this node knows it: its own and those the cluster announced (0: no limit)")
	fs.IntVar(&c.MaxTracks, "max-tracks", c.MaxTracks, "tracks (producers) one participant may publish (0: no limit)")
	fs.Float64Var(&c.ChatRate, "chat-rate", c.ChatRate, "chat messages per second one participant may send (0: no limit)")
	fs.IntVar(&c.ChatBurst, "chat-burst", c.ChatBurst, "chat messages one participant may send at once")
	fs.IntVar(&c.ChatBytes, "chat-bytes", c.ChatBytes, "chat bytes per second one participant may send, in bursts of two seconds' worth (0: no limit)")
	fs.Float64Var(&c.DataRate, "data-rate", c.DataRate, "data-channel messages per second one participant may send; the excess is dropped (0: no limit)")
	fs.IntVar(&c.DataBurst, "data-burst", c.DataBurst, "data-channel messages one participant may send at once")
	fs.IntVar(&c.DataBytes, "data-bytes", c.DataBytes, "data-channel bytes per second one participant may send, in bursts of two seconds' worth (0: no limit)")
	fs.IntVar(&c.NackMaxSeqs, "nack-max-seqs", c.NackMaxSeqs, "sequence numbers handled per NACK from a subscriber or relay child, newest first (the rest are not resent)")
}

// validateLimits reports the first problem with the limits.
func (c Config) validateLimits() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"join-rate", c.JoinRate}, {"join-burst", float64(c.JoinBurst)}, {"max-rooms", float64(c.MaxRooms)},
		{"max-room-participants", float64(c.MaxRoomParticipants)}, {"max-tracks", float64(c.MaxTracks)},
		{"chat-rate", c.ChatRate}, {"chat-burst", float64(c.ChatBurst)}, {"chat-bytes", float64(c.ChatBytes)},
		{"data-rate", c.DataRate}, {"data-burst", float64(c.DataBurst)}, {"data-bytes", float64(c.DataBytes)}} {
		if f.v < 0 {
			return fmt.Errorf("%s %v: must not be negative (0 turns the limit off)", f.name, f.v)
		}
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"join-burst", c.JoinBurst}, {"chat-burst", c.ChatBurst}, {"data-burst", c.DataBurst}, {"nack-max-seqs", c.NackMaxSeqs}} {
		if f.v < 1 {
			return fmt.Errorf("%s %d: must be at least 1", f.name, f.v)
		}
	}
	if _, err := signal.ParseTrustedProxies(c.TrustedProxies); err != nil {
		return fmt.Errorf("trusted-proxies: %w", err)
	}
	return nil
}

// off turns a flag's 0 (no limit) into the libraries' negative (their 0 is the default).
func off[T int | float64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

// nodeLimits are the node options of the limit flags.
func (c Config) nodeLimits() node.Limits {
	return node.Limits{
		Rooms:            off(c.MaxRooms),
		RoomParticipants: off(c.MaxRoomParticipants),
		Tracks:           off(c.MaxTracks),
		Chat:             node.Rate{Messages: off(c.ChatRate), Burst: c.ChatBurst, Bytes: off(c.ChatBytes)},
		Data:             node.Rate{Messages: off(c.DataRate), Burst: c.DataBurst, Bytes: off(c.DataBytes)},
		NackSeqs:         c.NackMaxSeqs,
	}
}

// joinLimits are the signaling options of the join flags.
func (c Config) joinLimits() signal.JoinLimits {
	proxies, _ := signal.ParseTrustedProxies(c.TrustedProxies) // validated
	return signal.JoinLimits{Rate: off(c.JoinRate), Burst: c.JoinBurst, TrustedProxies: proxies}
}
