package relay

import (
	"context"
	"errors"
)

// Errors of pipe setup. A parent answers a refused request with one of these messages.
var (
	ErrFanoutFull  = errors.New("relay: fan-out full")
	ErrNoCarrier   = errors.New("relay: no live node carries the producer")
	ErrNotCarried  = errors.New("relay: producer not carried here")
	ErrBadRequest  = errors.New("relay: bad pipe request")
	ErrSSRCInUse   = errors.New("relay: ssrc in use")
	ErrLinkChanged = errors.New("relay: the link to the parent was reset while asking")
	ErrPeerGone    = errors.New("relay: the peer left the cluster")
)

// PipeRequest asks a node that carries a producer to relay it to From (or, in Unpipe and
// Dropped, names the pipe that ends: its producer and SSRC). The asker is ready for the media
// before it asks (its link expects the parent, the SSRC routes to the pipe), since the parent
// starts sending before its reply arrives.
type PipeRequest struct {
	Room      string `json:"room"`
	Producer  string `json:"producer"`
	From      string `json:"from"`
	RelayAddr string `json:"relay_addr,omitempty"`
	Key       []byte `json:"key,omitempty"` // the asker's receiving key on the link
	// KeyEpoch is Key's epoch in the asker's key chain (see Keying).
	KeyEpoch uint32 `json:"key_epoch,omitempty"`
	// SSRC is the SSRC to relay the producer under: the asker hands out each only once per
	// receiving key chain (the parent also sends its feedback under it if the request makes
	// its sending context).
	SSRC uint32 `json:"ssrc"`
	// Layers is how many SSRCs from SSRC on the asker routes to the pipe, one per simulcast
	// layer (0: one, an asker that knows no layers); the parent relays at most that many.
	Layers uint32 `json:"layers,omitempty"`
	// Demand are the simulcast layers the asker needs (bit i: layer i; 0: every layer): the
	// pipe carries only those (dynacast). In a layer demand (Signaler.Layers), the new set.
	Demand uint8 `json:"demand,omitempty"`
}

// PipeReply answers a PipeRequest.
type PipeReply struct {
	OK        bool   `json:"ok"`
	Error     string `json:"error,omitempty"`
	RelayAddr string `json:"relay_addr,omitempty"`
	Key       []byte `json:"key,omitempty"` // the parent's receiving key on the link
	// KeyEpoch is Key's epoch in the parent's key chain.
	KeyEpoch uint32 `json:"key_epoch,omitempty"`
	// SSRC is the SSRC the asker sends its feedback under if the reply makes its sending
	// context: one the parent never handed out before under its key chain.
	SSRC uint32 `json:"ssrc,omitempty"`
}

// Signaler is the control path the pipes need between nodes; the cluster layer provides it
// (over NATS) and delivers the other side's calls to Pipes.ServePipe, Pipes.Unpiped,
// Pipes.Dropped and Pipes.ServeLayers.
type Signaler interface {
	// RequestPipe asks parent to relay a producer here and returns its answer.
	RequestPipe(ctx context.Context, parent string, req PipeRequest) (PipeReply, error)
	// Unpipe tells parent to stop relaying the pipe req names (one way).
	Unpipe(parent string, req PipeRequest)
	// Dropped tells child that this node stopped relaying the pipe req names (one way).
	Dropped(child string, req PipeRequest)
	// Layers tells parent which layers of the pipe req names this node now needs (req.Demand;
	// one way, repeated now and then: a lost one heals). The parent's Pipes.ServeLayers.
	Layers(parent string, req PipeRequest)
	// Piped tells the room's nodes that this node now gets producer from parent, or no longer
	// carries it (parent "").
	Piped(room, producer, parent string)
}

// Peer is what the pipes need to know of another live node.
type Peer struct {
	ID        string
	Region    string
	RelayAddr string
}

// Peers is the live membership as the pipes see it; the cluster layer provides it.
// RoomNodes is what a Signaler may also tell: the other nodes known to have participants in a
// room open here. Without it, a node is alone in its region in every room as far as HubDelay
// goes, and crosses a region boundary at once (the behaviour before region hubs).
type RoomNodes interface {
	RoomNodes(room string) []string
}

type Peers interface {
	// Peer returns a live node by id.
	Peer(id string) (Peer, bool)
	// Regions maps every live node other than this one to its region.
	Regions() map[string]string
	// Draining lists the live nodes other than this one that are draining: never a new
	// child's parent while another carrier exists, and their children move away (Pipes'
	// hand-off).
	Draining() []string
}
