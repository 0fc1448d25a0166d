package bots

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cascade-sfu/cascade/signal/auth"
	"github.com/pion/webrtc/v4"
)

// Options configure a run.
type Options struct {
	// URLs are the nodes' signaling URLs (ws://host:port/ws or ws://host:port); subscribers
	// spread over them round-robin.
	URLs []string
	// PublishURL is where publishers join; empty means URLs[0].
	PublishURL string
	// Room is the room name; with Rooms > 1 the rooms are Room-0, Room-1, ...
	Room  string
	Rooms int
	// Publishers and Subscribers are per room. With no publishers, the subscribers receive the
	// producers already in the room (another process's publishers: a second load machine, or
	// subscribers on a host of their own whose path a test shapes).
	Publishers, Subscribers int
	// Duration is how long the full load holds once every subscriber joined and receives media
	// (or JoinTimeout passed since the last join).
	Duration time.Duration
	// Rate is how many bots join per second (publishers first).
	Rate float64
	// Video and Audio choose what publishers send.
	Video, Audio bool
	// Simulcast makes the publishers send their video as three simulcast layers (the clips of
	// media.Layers, rids q, h, f) and the subscribers record the layer they receive over time
	// (layerChanged and the size of the keyframes they receive), for the report.
	Simulcast bool
	// Keys sign the bots' tokens.
	Keys auth.Keys
	// LoopbackOnly keeps the bots' media on 127.0.0.1.
	LoopbackOnly bool
	// Networks are the candidate networks of every bot, publishers and subscribers
	// (client.Options.NetworkTypes; nil: the client's default). client.IPv6Only makes the bots
	// use IPv6 only.
	Networks []webrtc.NetworkType
	// SubscriberNetworks, when not nil, are those of the subscribers instead of Networks.
	// client.TCPOnly makes every subscriber use ICE-TCP.
	SubscriberNetworks []webrtc.NetworkType
	// SubscriberRelay makes every subscriber use only the node's TURN servers from the join
	// response (client.Options.ICETransportPolicy relay), as a viewer behind a network that
	// allows no direct path. false: direct paths, as clients prefer them.
	SubscriberRelay bool
	// JoinTimeout bounds one bot's join (signaling and first media).
	JoinTimeout time.Duration
	// NoRedirect makes every bot join exactly the node it is given: the join asks the node to
	// keep it (noRedirect) instead of following a redirect to a better node, as real clients do.
	NoRedirect bool
	// RunID goes into every bot's identity (pub-ROOM-RUNID-N, sub-ROOM-RUNID-N), so that two
	// runs in one room (two load machines) do not replace each other's bots; empty: a random one.
	RunID string
	// MaxStall fails the run when a subscriber goes without media from a live producer for
	// longer than this (0: no limit; stalls are reported either way).
	MaxStall time.Duration
	// NoResume turns the bots' session resume off (client.Options.Resume): a bot whose node
	// goes then loses its session, as before resume existed.
	NoResume bool
	// Regions are the bots' region hints for placement (client.Options.Region): subscriber n
	// (counted over the rooms, as for URLs) gives Regions[n%len(Regions)], publishers the first;
	// nil: no hint. With URLs of the same length, each subscriber asks a node of its region, as
	// geo-DNS would send it.
	Regions []string
	// Progress receives the live progress display (nil: none).
	Progress io.Writer
}

// region is the region hint of subscriber n (publishers: 0), "" without Regions.
func (o Options) region(n int) string {
	if len(o.Regions) == 0 {
		return ""
	}
	return o.Regions[n%len(o.Regions)]
}

// ErrNoBots is returned when the options ask for no subscriber (or a negative count).
var ErrNoBots = errors.New("no bots: need at least one subscriber, and no negative count")

// ErrBadRunID is returned for a run id that is not 1 to 32 letters, digits, '.', '_' or '-'.
var ErrBadRunID = errors.New("bad run id: want 1 to 32 letters, digits, '.', '_' or '-'")

// newRunID is a random run id: 6 hex digits, short enough to keep the bots' names readable.
func newRunID() string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validRunID tells whether id can go into the bots' identities.
func validRunID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// pubName and subName are the identities of the i-th publisher and subscriber of room.
func pubName(room, runID string, i int) string { return fmt.Sprintf("pub-%s-%s-%d", room, runID, i) }
func subName(room, runID string, i int) string { return fmt.Sprintf("sub-%s-%s-%d", room, runID, i) }
