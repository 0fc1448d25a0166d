package bots

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/cascade-sfu/cascade/bots/media"
	"github.com/cascade-sfu/cascade/signal/proto"
)

// Layers over time (issue 15): with Options.Simulcast, each subscriber records, per received
// video track, the layer it receives as the node announces it (layerChanged) and as the media
// shows it (the size of each VP8 keyframe received), and per second what arrived: bytes, loss
// from sequence gaps, the longest wait between two video packets. The report shows them per
// subscriber; the shaping test (shaping_test.go) judges a bandwidth cap by them.

// LayerChange is one change of the layer a subscriber receives of a video producer.
type LayerChange struct {
	// AtMs is when the subscriber saw the change, Unix milliseconds.
	AtMs int64 `json:"at_ms"`
	// Source is "node" for a layerChanged notification (Layer, Rid), "media" for a keyframe of
	// another size (Width, Height).
	Source string `json:"source"`
	Layer  int    `json:"layer"`
	Rid    string `json:"rid,omitempty"`
	Width  int    `json:"width,omitempty"`
	Height int    `json:"height,omitempty"`
}

// VideoSecond is one second of a received video track.
type VideoSecond struct {
	T int `json:"t"` // seconds since the run started
	// Layer and Rid are the node's last word by the end of the second (-1: none yet); Width and
	// Height the size of the last keyframe received by then (0: none yet).
	Layer  int    `json:"layer"`
	Rid    string `json:"rid,omitempty"`
	Width  int    `json:"width"`
	Height int    `json:"height"`
	// Kbps is the RTP bytes of the track's media received in the second; PadKbps those of
	// padding-only packets (the node's bandwidth probes), which are not media.
	Kbps    float64 `json:"kbps"`
	PadKbps float64 `json:"pad_kbps,omitempty"`
	// Packets and Lost: received in the second, and missing by sequence number (a late
	// packet counts back in the second it arrives).
	Packets int64 `json:"packets"`
	Lost    int64 `json:"lost"`
	// MaxGapMs is the longest time between two packets of the track that ended in the second.
	MaxGapMs float64 `json:"max_gap_ms"`
}

// VideoResult is a subscriber's view of one video producer over the run.
type VideoResult struct {
	Producer string        `json:"producer"`
	Changes  []LayerChange `json:"changes"`
	Seconds  []VideoSecond `json:"seconds"`
}

// MediaSecond is one second of everything a subscriber received (all tracks).
type MediaSecond struct {
	T       int     `json:"t"`
	Kbps    float64 `json:"kbps"` // media, without padding-only packets
	PadKbps float64 `json:"pad_kbps,omitempty"`
	Packets int64   `json:"packets"`
	Lost    int64   `json:"lost"`
}

// videoLog is what a subscriber records of one video track with Options.Simulcast; its reader
// and the notification handler write it under the subscriber's mutex.
type videoLog struct {
	changes       []LayerChange
	layer         int
	rid           string
	width, height int
	last          int64 // unix nanos of the latest packet
	secs          []VideoSecond
}

func newVideoLog() *videoLog { return &videoLog{layer: -1} }

// second is the record of second sec, grown as needed (each new second starts with the state
// at the end of the one before).
func (v *videoLog) second(sec int) *VideoSecond {
	for len(v.secs) <= sec {
		v.secs = append(v.secs, VideoSecond{T: len(v.secs), Layer: v.layer, Rid: v.rid, Width: v.width, Height: v.height})
	}
	return &v.secs[sec]
}

// notified records a layerChanged notification.
func (v *videoLog) notified(now int64, sec int, d proto.LayerChangedData) {
	v.layer, v.rid = d.Layer, d.Rid
	v.changes = append(v.changes, LayerChange{AtMs: now / 1e6, Source: "node", Layer: d.Layer, Rid: d.Rid})
	if sec >= 0 {
		s := v.second(sec)
		s.Layer, s.Rid = d.Layer, d.Rid
	}
}

// packet records a received RTP packet (pkt) of n bytes, lost the packets its sequence number
// says went missing just before it (negative: a late one arrived).
func (v *videoLog) packet(now int64, sec int, pkt []byte, lost int64) {
	if sec < 0 {
		return
	}
	s := v.second(sec)
	s.Packets++
	s.Lost += lost
	if paddingOnly(pkt) {
		s.PadKbps += float64(len(pkt)) * 8 / 1000
	} else {
		s.Kbps += float64(len(pkt)) * 8 / 1000
	}
	if v.last != 0 {
		s.MaxGapMs = max(s.MaxGapMs, float64(now-v.last)/1e6)
	}
	v.last = max(v.last, now)
	if w, h, ok := vp8KeyframeSize(pkt); ok && (w != v.width || h != v.height) {
		v.width, v.height = w, h
		s.Width, s.Height = w, h
		v.changes = append(v.changes, LayerChange{AtMs: now / 1e6, Source: "media", Layer: layerOfSize(w), Width: w, Height: h})
	}
}

// result is the track's record up to second last (the end of the run).
func (v *videoLog) result(producer string, last int) VideoResult {
	if len(v.secs) > 0 {
		v.second(last)
	}
	return VideoResult{Producer: producer, Changes: append([]LayerChange(nil), v.changes...), Seconds: append([]VideoSecond(nil), v.secs...)}
}

// layerOfSize is the layer of the bots' clips that has width w (-1: none).
func layerOfSize(w int) int {
	for i, l := range media.Layers() {
		if l.Width == w {
			return i
		}
	}
	return -1
}

// paddingOnly tells whether an RTP packet carries nothing but padding (RFC 3550 5.1).
func paddingOnly(pkt []byte) bool {
	if len(pkt) < 12 || pkt[0]&0x20 == 0 {
		return false
	}
	off := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 && len(pkt) >= off+4 {
		off += 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	}
	return off+int(pkt[len(pkt)-1]) >= len(pkt)
}

// vp8KeyframeSize reads the frame size of an RTP packet that starts a VP8 keyframe (RFC 7741
// payload descriptor, then the RFC 6386 keyframe header); ok is false for any other packet.
func vp8KeyframeSize(pkt []byte) (w, h int, ok bool) {
	if len(pkt) < 12 || pkt[0]>>6 != 2 {
		return 0, 0, false
	}
	off := 12 + 4*int(pkt[0]&0x0f)
	if pkt[0]&0x10 != 0 { // header extension
		if len(pkt) < off+4 {
			return 0, 0, false
		}
		off += 4 + 4*int(binary.BigEndian.Uint16(pkt[off+2:]))
	}
	if len(pkt) < off+1 {
		return 0, 0, false
	}
	d := pkt[off]
	if d&0x10 == 0 || d&0x07 != 0 { // not the start of partition 0
		return 0, 0, false
	}
	off++
	if d&0x80 != 0 { // extended control bits
		if len(pkt) < off+1 {
			return 0, 0, false
		}
		x := pkt[off]
		off++
		if x&0x80 != 0 { // PictureID, 7 or 15 bits
			if len(pkt) < off+1 {
				return 0, 0, false
			}
			if pkt[off]&0x80 != 0 {
				off++
			}
			off++
		}
		if x&0x40 != 0 { // TL0PICIDX
			off++
		}
		if x&0x30 != 0 { // TID/KEYIDX
			off++
		}
	}
	p := pkt[min(off, len(pkt)):]
	if len(p) < 10 || p[0]&0x01 != 0 || p[3] != 0x9d || p[4] != 0x01 || p[5] != 0x2a {
		return 0, 0, false
	}
	return int(binary.LittleEndian.Uint16(p[6:]) & 0x3fff), int(binary.LittleEndian.Uint16(p[8:]) & 0x3fff), true
}

// layerStrip is a subscriber's layers over the run in one line: each run of seconds on one
// layer as "label x seconds", the label the rid of the received size (or the node's, or "-"
// before any video).
func layerStrip(secs []VideoSecond) string {
	var parts []string
	label, n := "", 0
	flush := func() {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%s×%d", label, n))
		}
	}
	for _, s := range secs {
		l := secondLabel(s)
		if l != label {
			flush()
			label, n = l, 0
		}
		n++
	}
	flush()
	return strings.Join(parts, " ")
}

func secondLabel(s VideoSecond) string {
	if i := layerOfSize(s.Width); i >= 0 {
		return media.Layers()[i].Rid
	}
	if s.Width > 0 {
		return fmt.Sprintf("%dx%d", s.Width, s.Height)
	}
	if s.Rid != "" {
		return s.Rid
	}
	return "-"
}

// runSecond is the second of the run that unix nanos t falls in (-1 before the start).
func runSecond(start time.Time, t int64) int {
	if d := t - start.UnixNano(); d >= 0 {
		return int(time.Duration(d) / time.Second)
	}
	return -1
}

// layerResults are the subscriber's Video and Media over the run's seconds; s.mu is held.
func (s *subscriber) layerResults(seconds int) ([]VideoResult, []MediaSecond) {
	var video []VideoResult
	media := make([]MediaSecond, seconds)
	for i := range media {
		media[i].T = i
	}
	ids := make([]string, 0, len(s.tracks))
	for id := range s.tracks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		t := s.tracks[id]
		if t.video != nil {
			video = append(video, t.video.result(id, seconds-1))
		}
		for i := range min(len(t.bytesSec), seconds) {
			media[i].Kbps += float64(t.bytesSec[i]-t.padSec[i]) * 8 / 1000
			media[i].PadKbps += float64(t.padSec[i]) * 8 / 1000
			media[i].Packets += t.pktsSec[i]
			media[i].Lost += t.lostSec[i]
		}
	}
	return video, media
}
