package client

import (
	"encoding/json"
	"time"

	"github.com/cascade-sfu/cascade/signal/proto"
	"github.com/pion/rtcp"
	"github.com/pion/webrtc/v4"
)

// Options configure a client.
type Options struct {
	// Token is the access token sent with join.
	Token string
	// Region is the client's region, a placement hint for the node.
	Region string
	// NoRedirect makes the node accept the join instead of redirecting to a better node.
	NoRedirect bool
	// NoAutoSubscribe turns off the server's automatic subscription to every producer.
	NoAutoSubscribe bool
	// LoopbackOnly gathers only loopback candidates (tests on one machine).
	LoopbackOnly bool
	// NetworkTypes are the candidate networks ICE may use; nil means DefaultNetworkTypes (UDP,
	// with ICE-TCP for when UDP is blocked). TCPOnly and IPv6Only are the usual others.
	NetworkTypes []webrtc.NetworkType
	// OnTrack is called for every consumer track that arrives on the receive transport.
	OnTrack func(*webrtc.TrackRemote, *webrtc.RTPReceiver)
	// OnNotification is called, in order, for every server notification (after the client
	// handled offers and trickles itself). Decode turns the data into its proto type (for
	// example proto.RoomUpdated, proto.UnmuteRequested, proto.Closed). NoteOfferFailed is
	// the client's own: an offer it could not apply.
	OnNotification func(method string, data json.RawMessage)
	// OnLayerChanged, OnLayersWanted and OnActiveSpeakers are called, in order with the other
	// notifications (before OnNotification), for layerChanged (the layer of a producer this
	// client now receives), layersWanted (the layers of one of its simulcast producers some
	// subscriber needs) and activeSpeakers.
	OnLayerChanged   func(proto.LayerChangedData)
	OnLayersWanted   func(proto.LayersWantedData)
	OnActiveSpeakers func(proto.ActiveSpeakersData)
	// OnPublisherRTCP is called with the RTCP the node sends about the client's published
	// tracks (keyframe requests, NACKs, receiver reports).
	OnPublisherRTCP func([]rtcp.Packet)
	// OnData is called for every data-channel message from the room.
	OnData func(msg []byte)
	// Lean leaves out pion's interceptors (NACK generator and responder, RTCP reports): a
	// cheaper client for load tests, which then measures loss before retransmission. It keeps
	// transport-cc feedback (pion's TWCC interceptor), as every browser sends it: the node
	// estimates each subscriber's bandwidth from it.
	Lean bool
	// RequestTimeout bounds each request; 0 means 10 s.
	RequestTimeout time.Duration
	// ICETransportPolicy is both transports' policy: webrtc.ICETransportPolicyRelay uses only
	// the node's TURN servers (from the join response), as a client whose network blocks
	// every direct path would (and no ICE-TCP host candidates). The zero value (all) prefers
	// direct paths.
	ICETransportPolicy webrtc.ICETransportPolicy
	// Resume keeps the session across the loss of its node (PROTOCOL.md, "Resume"): the
	// client pings the node, and when it goes silent past proto.PingDeadlineMillis or its
	// WebSocket closes without a closed notification, resumes on another node with the same
	// participant and producer ids; a migrate notification moves it make-before-break.
	// Off, a lost node ends the session (Done, Err).
	Resume bool
	// ResumeURLs are more nodes to resume on, after the join answer's nodes and the URL given
	// to Dial.
	ResumeURLs []string
	// ResumeTimeout bounds a resume from the loss to the last attempt; 0 means 30 s.
	ResumeTimeout time.Duration
	// OnResume is called after each resume or migration, from the client's supervisor.
	OnResume func(Resume)

	// pingInterval replaces proto.PingIntervalMillis (the deadline is three intervals): tests.
	pingInterval time.Duration
}

// Candidate networks for Options.NetworkTypes.
var (
	// DefaultNetworkTypes: UDP over IPv4, and ICE-TCP (active candidates dialing the node's
	// passive ones) when UDP fails; UDP wins when both work.
	DefaultNetworkTypes = []webrtc.NetworkType{webrtc.NetworkTypeUDP4, webrtc.NetworkTypeTCP4}
	// TCPOnly uses ICE-TCP over IPv4 only, as a client whose UDP is blocked.
	TCPOnly = []webrtc.NetworkType{webrtc.NetworkTypeTCP4}
	// IPv6Only uses UDP and ICE-TCP over IPv6 only.
	IPv6Only = []webrtc.NetworkType{webrtc.NetworkTypeUDP6, webrtc.NetworkTypeTCP6}
)
